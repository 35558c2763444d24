// Command coredns is CoreDNS for the real node's cluster DNS (testenv/node.py), built
// with only the plugins a cluster zone needs: no forward, so no name ever resolves
// off this machine (a name outside cluster.local is refused at once), and no cache,
// so a headless peer's name resolves the moment its pod has an address.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The directives a Corefile may use, in the order they run: any other (forward among
// them) is a Corefile error.
func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "kubernetes"}
}

func main() {
	coremain.Run()
}
