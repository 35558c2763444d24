// Command etcd is the upstream etcd server built from its Go module for the
// kubejobs test environment (no release download needed).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
