//go:build machinery114

package oracle

import (
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
)

// From 1.14 on, loading validates the documents; the validate op wants Validate's own verdict.
func loadUnvalidated(raw []byte) (config.Provider, error) {
	return configloader.NewFromBytes(raw, configloader.WithNoValidation())
}

func cniOption(url string) generate.Option { return generate.WithCustomCNIUrl(url) }

// versionOptions are the generator options that exist from 1.14 on.
func versionOptions(in *GenInput) ([]generate.Option, error) {
	var opts []generate.Option

	if in.SkipUnattendedInstall {
		opts = append(opts, generate.WithSkipUnattendedInstallConfig(true))
	}

	if in.KubeSpan != nil {
		opts = append(opts, generate.WithKubeSpanEnabled(*in.KubeSpan))
	}

	return opts, nil
}
