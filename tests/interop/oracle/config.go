package oracle

import (
	"fmt"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"gopkg.in/yaml.v3"
)

// GenInput mirrors omniport's GenerateOptions (same names, snake_case) plus the positional inputs.
type GenInput struct {
	Type              string              `json:"type"`
	ClusterName       string              `json:"cluster_name"`
	Endpoint          string              `json:"endpoint"`
	KubernetesVersion string              `json:"kubernetes_version"`
	Secrets           string              `json:"secrets"`
	AdditionalSANs    []string            `json:"additional_sans"`
	DNSDomain         string              `json:"dns_domain"`
	AllowScheduling   bool                `json:"allow_scheduling_on_control_planes"`
	InstallDisk       string              `json:"install_disk"`
	InstallImage      string              `json:"install_image"`
	InstallKernelArgs []string            `json:"install_extra_kernel_args"`
	LocalAPIPort      int                 `json:"local_api_server_port"`
	KubePrismPort     *int                `json:"kube_prism_port"`
	Sysctls           map[string]string   `json:"sysctls"`
	CNIURL            string              `json:"cni_url"`
	RegistryMirrors   map[string][]string `json:"registry_mirrors"`
	Discovery         *bool               `json:"discovery"`
	HostDNSForward    *bool               `json:"host_dns_forward_kube_dns"`
	RegistryCACerts   map[string]string   `json:"registry_ca_certs"`
	RegistryInsecure  []string            `json:"registry_insecure"`
	Debug             bool                `json:"debug"`
	// From machinery 1.14 on.
	SkipUnattendedInstall bool  `json:"skip_unattended_install"`
	KubeSpan              *bool `json:"kubespan"`
}

func init() {
	register("secrets", newSecrets)
	register("gen", gen)
	register("patch", patch)
	register("parse", parse)
}

func contract(c *Case) (*config.VersionContract, error) {
	if c.Contract == "" {
		return nil, fmt.Errorf("case %s: no contract", c.ID)
	}

	return config.ParseContractFromVersion(c.Contract)
}

// fixedClock keeps certificate validity out of the comparison: every bundle starts at one instant.
var fixedClock = secrets.NewFixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

func newSecrets(c *Case) (*Answer, error) {
	vc, err := contract(c)
	if err != nil {
		return nil, err
	}

	bundle, err := secrets.NewBundle(fixedClock, vc)
	if err != nil {
		return nil, err
	}

	out, err := yaml.Marshal(bundle)
	if err != nil {
		return nil, err
	}

	return &Answer{Secrets: string(out)}, nil
}

func loadBundle(text string) (*secrets.Bundle, error) {
	var bundle secrets.Bundle
	if err := yaml.Unmarshal([]byte(text), &bundle); err != nil {
		return nil, fmt.Errorf("secrets bundle: %w", err)
	}

	bundle.Clock = fixedClock

	return &bundle, nil
}

func gen(c *Case) (*Answer, error) {
	vc, err := contract(c)
	if err != nil {
		return nil, err
	}

	in := c.Gen
	if in == nil {
		return nil, fmt.Errorf("case %s: gen without input", c.ID)
	}

	bundle, err := loadBundle(in.Secrets)
	if err != nil {
		return nil, err
	}

	opts := []generate.Option{
		generate.WithVersionContract(vc),
		generate.WithSecretsBundle(bundle),
	}

	if len(in.AdditionalSANs) > 0 {
		opts = append(opts, generate.WithAdditionalSubjectAltNames(in.AdditionalSANs))
	}

	if in.DNSDomain != "" {
		opts = append(opts, generate.WithDNSDomain(in.DNSDomain))
	}

	if in.AllowScheduling {
		opts = append(opts, generate.WithAllowSchedulingOnControlPlanes(true))
	}

	if in.InstallDisk != "" {
		opts = append(opts, generate.WithInstallDisk(in.InstallDisk))
	}

	if in.InstallImage != "" {
		opts = append(opts, generate.WithInstallImage(in.InstallImage))
	}

	if len(in.InstallKernelArgs) > 0 {
		opts = append(opts, generate.WithInstallExtraKernelArgs(in.InstallKernelArgs))
	}

	if in.LocalAPIPort != 0 {
		opts = append(opts, generate.WithLocalAPIServerPort(in.LocalAPIPort))
	}

	if in.KubePrismPort != nil {
		opts = append(opts, generate.WithKubePrismPort(*in.KubePrismPort))
	}

	if len(in.Sysctls) > 0 {
		opts = append(opts, generate.WithSysctls(in.Sysctls))
	}

	if in.CNIURL != "" {
		opts = append(opts, cniOption(in.CNIURL))
	}

	for host, endpoints := range in.RegistryMirrors {
		opts = append(opts, generate.WithRegistryMirror(host, endpoints...))
	}

	for host, ca := range in.RegistryCACerts {
		opts = append(opts, generate.WithRegistryCACert(host, ca))
	}

	for _, host := range in.RegistryInsecure {
		opts = append(opts, generate.WithRegistryInsecureSkipVerify(host))
	}

	if in.Debug {
		opts = append(opts, generate.WithDebug(true))
	}

	if in.Discovery != nil {
		opts = append(opts, generate.WithClusterDiscovery(*in.Discovery))
	}

	if in.HostDNSForward != nil {
		opts = append(opts, generate.WithHostDNSForwardKubeDNSToHost(*in.HostDNSForward))
	}

	more, err := versionOptions(in)
	if err != nil {
		return nil, err
	}

	opts = append(opts, more...)

	input, err := generate.NewInput(in.ClusterName, in.Endpoint, in.KubernetesVersion, opts...)
	if err != nil {
		return nil, err
	}

	var t machine.Type

	switch in.Type {
	case "controlplane":
		t = machine.TypeControlPlane
	case "worker":
		t = machine.TypeWorker
	case "init":
		t = machine.TypeInit
	default:
		return nil, fmt.Errorf("case %s: unknown machine type %q", c.ID, in.Type)
	}

	cfg, err := input.Config(t)
	if err != nil {
		return nil, err
	}

	return encode(cfg)
}

func encode(cfg config.Encoder) (*Answer, error) {
	out, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return nil, err
	}

	return &Answer{Config: string(out)}, nil
}

// patch applies the patches in order, as `talosctl machineconfig patch` does. Some machinery
// releases panic on some deletes; that is reported as the case's error ("panic: ..."), a
// refusal talosctl would show as a crash, instead of ending the batch.
func patch(c *Case) (a *Answer, err error) {
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()

	patches, err := configpatcher.LoadPatches(c.Patches)
	if err != nil {
		return nil, fmt.Errorf("load patches: %w", err)
	}

	out, err := configpatcher.Apply(configpatcher.WithBytes([]byte(c.Config)), patches)
	if err != nil {
		return nil, err
	}

	cfg, err := out.Config()
	if err != nil {
		return nil, err
	}

	return encode(cfg)
}

// parse is the config as machinery reads and writes it back: the reference form for comparisons.
func parse(c *Case) (*Answer, error) {
	cfg, err := configloader.NewFromBytes([]byte(c.Config))
	if err != nil {
		return nil, err
	}

	return encode(cfg)
}
