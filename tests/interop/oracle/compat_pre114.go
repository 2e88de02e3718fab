//go:build !machinery114

package oracle

import (
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
)

// Before 1.14, loading does not validate.
func loadUnvalidated(raw []byte) (config.Provider, error) {
	return configloader.NewFromBytes(raw)
}

func cniOption(url string) generate.Option {
	return generate.WithClusterCNIConfig(&v1alpha1.CNIConfig{CNIName: "custom", CNIUrls: []string{url}})
}

// versionOptions refuses the generator options this machinery release does not have.
func versionOptions(in *GenInput) ([]generate.Option, error) {
	if in.SkipUnattendedInstall || in.KubeSpan != nil {
		return nil, fmt.Errorf("skip_unattended_install and kubespan need machinery 1.14 or later")
	}

	return nil, nil
}
