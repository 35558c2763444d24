// Command kube is a multi-call binary for the kubejobs test environment.
//
// It dispatches on the program name (argv[0], usually a symlink) to
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet or kube-proxy, so the large
// Kubernetes dependency graph is compiled and linked once. The first argument
// may name the component instead (`kube kube-apiserver --help`).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	_ "time/tzdata" // CronJob time zones, as the upstream mains do

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	// the real node (testenv/node.py): pods that run real containers through containerd
	"kubelet": func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	// Services on the real node's pod network (iptables mode, in the node's network namespace)
	"kube-proxy": proxy.NewProxyCommand,
}

func main() {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	if _, ok := components[name]; !ok && len(os.Args) > 1 {
		if _, ok := components[os.Args[1]]; ok {
			name = os.Args[1]
			os.Args = os.Args[1:]
		}
	}
	newCommand, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: link this binary as kube-apiserver, kube-controller-manager, kube-scheduler, kubelet or kube-proxy (got %q)\n", name)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}
