// Command coredns is CoreDNS with only the plugins the local cluster's DNS needs, so the cloud
// SDKs of the others (route53, azure, clouddns, ...) stay out of the build. Built by
// hack/node-build.sh; `coredns -plugins` lists them.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	// The execution order of CoreDNS's generated core/dnsserver/zdirectives.go, reduced to the
	// plugins imported above. "prometheus" (plugin/metrics) is linked in anyway, as cache
	// imports it; listing it keeps kubeadm's default Corefile (`prometheus :9153`) valid.
	dnsserver.Directives = []string{
		"reload",
		"bind",
		"ready",
		"health",
		"prometheus",
		"errors",
		"log",
		"loadbalance",
		"cache",
		"hosts",
		"kubernetes",
		"loop",
		"forward",
	}
}

func main() {
	coremain.Run()
}
