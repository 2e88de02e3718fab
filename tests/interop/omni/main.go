// Command omni drives Omni's own Go client and cluster importer (github.com/siderolabs/omni/client)
// against an Omni, normally the omniport lab's, and prints what it saw as JSON on stdout.
//
// Usage:
//
//	omni [global flags] list TYPE                     resources of TYPE, a JSON array
//	omni [global flags] get TYPE ID                   one resource, a JSON object
//	omni [global flags] import [flags]                clusterimport BuildContext + Run:
//	    -dry-run, -force, -skip-health-check, -backup-output FILE, -wait-timeout D,
//	    -nodes A,B (default: the lab's), -talosconfig FILE (default: the lab's),
//	    -talos-version, -kubernetes-version, -initial-talos-version, -initial-kubernetes-version,
//	    -lab-versions (the four versions from the lab's import.yaml)
//	omni [global flags] abort CLUSTER                 clusterimport.Abort
//	omni [global flags] unlock CLUSTER                what omnictl cluster unlock does
//	omni version                                      the client release this is built with
//	omni join-docs -url U -token T [-events-port P] [-logs-port P]
//	                                                  Omni's join documents for those settings
//
// Global flags: -lab DIR (read DIR/import.yaml, DIR/service-account.key, DIR/lab-ca.pem),
// -endpoint URL (else $OMNI_ENDPOINT, else the lab's), -namespace NS (list/get).
// Credentials come from $SIDERO_SERVICE_ACCOUNT_KEY or $OMNI_SERVICE_ACCOUNT_KEY, as omnictl
// reads them; TLS trusts the system roots only ($SSL_CERT_FILE). With -lab, $SSL_CERT_FILE is
// the lab's CA and the key is the lab's service account unless the environment names one.
//
// Before any command the client does what omnictl does on start-up: it reads SysVersions
// (ephemeral/current), checks the backend API version and lists Notifications.
//
// import prints {cluster, dry_run, ok, validation_error, error, backup, seconds, log} and exits 2
// when the import fails; abort prints {cluster, ok, error, log}, likewise.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/blang/semver/v4"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/go-api-signature/pkg/serviceaccount"
	"go.yaml.in/yaml/v4"

	"github.com/siderolabs/omni/client/pkg/client"
	"github.com/siderolabs/omni/client/pkg/clusterimport"
	"github.com/siderolabs/omni/client/pkg/omni/resources"
	omnires "github.com/siderolabs/omni/client/pkg/omni/resources/omni"
	"github.com/siderolabs/omni/client/pkg/omni/resources/system"
	"github.com/siderolabs/omni/client/pkg/version"
)

// clientRelease is the Omni client release go.mod pins; the driver presents itself as the
// omnictl of that release (API version 1), so the start-up version check runs as in a release.
const clientRelease = "v1.9.3"

type labSpec struct {
	Omni struct {
		URL string `yaml:"url"`
	} `yaml:"omni"`
	Talos struct {
		Talosconfig string   `yaml:"talosconfig"`
		Nodes       []string `yaml:"nodes"`
	} `yaml:"talos"`
	Versions struct {
		Talos             string `yaml:"talos"`
		Kubernetes        string `yaml:"kubernetes"`
		InitialTalos      string `yaml:"initialTalos"`
		InitialKubernetes string `yaml:"initialKubernetes"`
	} `yaml:"versions"`
}

type globals struct {
	lab       string
	endpoint  string
	namespace string
	spec      *labSpec
}

func main() {
	version.Name = "omnictl"
	version.Tag = clientRelease
	version.API = 1

	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "omni:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var g globals

	fs := flag.NewFlagSet("omni", flag.ContinueOnError)
	fs.StringVar(&g.lab, "lab", "", "an omniport lab directory")
	fs.StringVar(&g.endpoint, "endpoint", "", "Omni URL (default $OMNI_ENDPOINT, else the lab's)")
	fs.StringVar(&g.namespace, "namespace", "", "namespace for list/get (default: the type's)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New("a command is required: list, get, import, abort or version")
	}

	if rest[0] == "version" {
		return printJSON(map[string]string{"client": clientRelease})
	}

	if rest[0] == "join-docs" {
		return joinDocs(rest[1:])
	}

	if err := g.loadLab(); err != nil {
		return err
	}

	switch rest[0] {
	case "list":
		return g.withClient(func(ctx context.Context, c *client.Client) error { return g.list(ctx, c, rest[1:]) })
	case "get":
		return g.withClient(func(ctx context.Context, c *client.Client) error { return g.get(ctx, c, rest[1:]) })
	case "import":
		return g.importCluster(rest[1:])
	case "abort":
		return g.withClient(func(ctx context.Context, c *client.Client) error { return g.abort(ctx, c, rest[1:]) })
	case "unlock":
		return g.withClient(func(ctx context.Context, c *client.Client) error { return g.unlock(ctx, c, rest[1:]) })
	default:
		return fmt.Errorf("unknown command %q", rest[0])
	}
}

// loadLab reads the lab's spec and fills the environment the Omni client reads, unless set.
func (g *globals) loadLab() error {
	if g.lab == "" {
		return nil
	}

	data, err := os.ReadFile(filepath.Join(g.lab, "import.yaml"))
	if err != nil {
		return err
	}

	var spec labSpec
	if err = yaml.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s/import.yaml: %w", g.lab, err)
	}

	g.spec = &spec

	if ca := filepath.Join(g.lab, "lab-ca.pem"); os.Getenv("SSL_CERT_FILE") != ca {
		// The lab's CA signs its Omni and Image Factory. Go reads SSL_CERT_FILE once, possibly
		// before main runs: start again with it set.
		self, exeErr := os.Executable()
		if exeErr != nil {
			return exeErr
		}

		env := []string{"SSL_CERT_FILE=" + ca}

		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "SSL_CERT_FILE=") {
				env = append(env, kv)
			}
		}

		return syscall.Exec(self, os.Args, env)
	}

	if envKey, _ := serviceaccount.GetFromEnv(); envKey == "" {
		key, readErr := os.ReadFile(filepath.Join(g.lab, "service-account.key"))
		if readErr != nil {
			return readErr
		}

		if err = os.Setenv("OMNI_SERVICE_ACCOUNT_KEY", strings.TrimSpace(string(key))); err != nil {
			return err
		}
	}

	return nil
}

func (g *globals) url() (string, error) {
	switch {
	case g.endpoint != "":
		return g.endpoint, nil
	case os.Getenv("OMNI_ENDPOINT") != "":
		return os.Getenv("OMNI_ENDPOINT"), nil
	case g.spec != nil && g.spec.Omni.URL != "":
		return g.spec.Omni.URL, nil
	}

	return "", errors.New("no Omni endpoint: pass -endpoint, set OMNI_ENDPOINT or use -lab")
}

// withClient is omnictl's start-up: a service-account client, then the version and
// notification checks, then the command.
func (g *globals) withClient(f func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	url, err := g.url()
	if err != nil {
		return err
	}

	envKey, value := serviceaccount.GetFromEnv()
	if envKey == "" {
		return errors.New("no service account key: set OMNI_SERVICE_ACCOUNT_KEY (or use -lab)")
	}

	if _, err = serviceaccount.Decode(value); err != nil {
		return err
	}

	c, err := client.New(url, client.WithServiceAccount(value))
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	st := c.Omni().State()

	sysVersion, err := safe.StateGet[*system.SysVersion](ctx, st, system.NewSysVersion(system.SysVersionID).Metadata())
	if err != nil {
		return fmt.Errorf("failed to get system version: %w", err)
	}

	if api := sysVersion.TypedSpec().Value.BackendApiVersion; api != version.API {
		return fmt.Errorf("client API version mismatch: backend API version %d, client API version %d", api, version.API)
	}

	backend, err := semver.ParseTolerant(sysVersion.TypedSpec().Value.BackendVersion)
	if err != nil {
		return fmt.Errorf("backend version %q: %w", sysVersion.TypedSpec().Value.BackendVersion, err)
	}

	if backend.Major > 1 || (backend.Major == 1 && backend.Minor >= 6) {
		notifications, listErr := safe.StateListAll[*omnires.Notification](ctx, st)
		if listErr != nil {
			return fmt.Errorf("failed to list notifications: %w", listErr)
		}

		for n := range notifications.All() {
			fmt.Fprintf(os.Stderr, "[%s] %s: %s\n", n.TypedSpec().Value.Type, n.TypedSpec().Value.Title, n.TypedSpec().Value.Body)
		}
	}

	return f(ctx, c)
}

// ---- list / get ------------------------------------------------------------------------------

type dumped struct {
	Namespace   string            `json:"namespace"`
	Type        string            `json:"type"`
	ID          string            `json:"id"`
	Version     string            `json:"version"`
	Phase       string            `json:"phase"`
	Owner       string            `json:"owner"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Finalizers  []string          `json:"finalizers"`
	Spec        json.RawMessage   `json:"spec"`
	// Compressed is set for ConfigPatches whose data came zstd-compressed (spec shows it plain).
	Compressed bool `json:"compressed,omitempty"`
}

func dump(res resource.Resource) (dumped, error) {
	md := res.Metadata()
	out := dumped{
		Namespace:   md.Namespace(),
		Type:        md.Type(),
		ID:          md.ID(),
		Version:     md.Version().String(),
		Phase:       md.Phase().String(),
		Owner:       md.Owner(),
		Labels:      md.Labels().Raw(),
		Annotations: md.Annotations().Raw(),
		Finalizers:  *md.Finalizers(),
	}

	if out.Labels == nil {
		out.Labels = map[string]string{}
	}

	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}

	if out.Finalizers == nil {
		out.Finalizers = []string{}
	}

	spec, err := json.Marshal(res.Spec())
	if err != nil {
		return out, fmt.Errorf("%s %s: %w", md.Type(), md.ID(), err)
	}

	out.Spec = spec

	if patch, ok := res.(*omnires.ConfigPatch); ok {
		out.Compressed = len(patch.TypedSpec().Value.GetCompressedData()) > 0
	}

	return out, nil
}

func (g *globals) metadata(typ, id string) (*resource.Metadata, error) {
	ns := g.namespace
	if ns == "" {
		def, ok := knownNamespaces[typ]
		if !ok {
			return nil, fmt.Errorf("unknown namespace for %s: pass -namespace", typ)
		}

		ns = def
	}

	md := resource.NewMetadata(ns, typ, id, resource.VersionUndefined)

	return &md, nil
}

var knownNamespaces = map[string]string{
	system.SysVersionType:    resources.EphemeralNamespace,
	omnires.NotificationType: resources.EphemeralNamespace,
}

func init() {
	for _, typ := range []resource.Type{
		omnires.ClusterType, omnires.ClusterStatusType, omnires.MachineSetType, omnires.MachineSetNodeType,
		omnires.ConfigPatchType, omnires.ClusterMachineType, omnires.MachineType, omnires.MachineStatusType,
		omnires.TalosVersionType, omnires.FeaturesConfigType, omnires.ImportedClusterSecretsType,
		"Links.omni.sidero.dev", "DefaultJoinTokens.omni.sidero.dev", "SiderolinkAPIConfigs.omni.sidero.dev",
	} {
		knownNamespaces[typ] = resources.DefaultNamespace
	}
}

func (g *globals) list(ctx context.Context, c *client.Client, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: list TYPE")
	}

	md, err := g.metadata(args[0], "")
	if err != nil {
		return err
	}

	items, err := c.Omni().State().List(ctx, *md)
	if err != nil {
		return err
	}

	out := make([]dumped, 0, len(items.Items))

	for _, res := range items.Items {
		d, dumpErr := dump(res)
		if dumpErr != nil {
			return dumpErr
		}

		out = append(out, d)
	}

	return printJSON(out)
}

func (g *globals) get(ctx context.Context, c *client.Client, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: get TYPE ID")
	}

	md, err := g.metadata(args[0], args[1])
	if err != nil {
		return err
	}

	res, err := c.Omni().State().Get(ctx, *md)
	if err != nil {
		return err
	}

	d, err := dump(res)
	if err != nil {
		return err
	}

	return printJSON(d)
}

// ---- import / abort --------------------------------------------------------------------------

type importResult struct {
	Cluster    string  `json:"cluster"`
	DryRun     bool    `json:"dry_run"`
	OK         bool    `json:"ok"`
	Validation bool    `json:"validation_error"`
	Error      string  `json:"error,omitempty"`
	Backup     string  `json:"backup,omitempty"`
	Seconds    float64 `json:"seconds"`
	Log        string  `json:"log"`
}

func (g *globals) importCluster(args []string) error {
	var (
		input       clusterimport.Input
		talosconfig string
		nodes       string
		timeout     time.Duration
	)

	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.StringVar(&talosconfig, "talosconfig", "", "talosconfig (default: the lab's)")
	fs.StringVar(&nodes, "nodes", "", "comma-separated node addresses (default: the lab's)")
	fs.StringVar(&input.Versions.TalosVersion, "talos-version", "", "expected Talos version")
	fs.StringVar(&input.Versions.KubernetesVersion, "kubernetes-version", "", "expected Kubernetes version")
	fs.StringVar(&input.Versions.InitialTalosVersion, "initial-talos-version", "", "initial Talos version")
	fs.StringVar(&input.Versions.InitialKubernetesVersion, "initial-kubernetes-version", "", "initial Kubernetes version")
	fs.BoolVar(&input.DryRun, "dry-run", false, "validate and show the plan only")
	fs.BoolVar(&input.Force, "force", false, "continue past validation failures")
	fs.BoolVar(&input.SkipHealthCheck, "skip-health-check", false, "skip the Talos health check")
	fs.StringVar(&input.BackupOutput, "backup-output", "", "backup zip path")
	fs.DurationVar(&timeout, "wait-timeout", 5*time.Minute, "deadline for the whole import")

	labVersions := fs.Bool("lab-versions", false, "take the four versions from the lab's import.yaml")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if g.spec != nil {
		if talosconfig == "" && g.spec.Talos.Talosconfig != "" {
			talosconfig = filepath.Join(g.lab, g.spec.Talos.Talosconfig)
		}

		if nodes == "" {
			nodes = strings.Join(g.spec.Talos.Nodes, ",")
		}

		if *labVersions {
			v := g.spec.Versions
			input.Versions = clusterimport.Versions{
				TalosVersion: v.Talos, KubernetesVersion: v.Kubernetes,
				InitialTalosVersion: v.InitialTalos, InitialKubernetesVersion: v.InitialKubernetes,
			}
		}
	}

	if nodes != "" {
		input.Nodes = strings.Split(nodes, ",")
	}

	if len(input.Nodes) == 0 {
		return errors.New("at least one node is required to import a cluster")
	}

	var log bytes.Buffer

	input.LogWriter = io.MultiWriter(&log, os.Stderr)
	result := importResult{DryRun: input.DryRun}
	start := time.Now()

	err := g.withClient(func(ctx context.Context, c *client.Client) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()

		omniState := c.Omni().State()

		factory, err := clusterimport.BuildImageFactoryClient(ctx, omniState)
		if err != nil {
			return err
		}

		talos, err := clusterimport.BuildTalosClient(ctx, talosconfig, "", "", nil)
		if err != nil {
			return err
		}

		importContext, err := clusterimport.BuildContext(ctx, input, omniState, factory, talos)
		if err != nil {
			talos.Close() //nolint:errcheck

			return err
		}

		defer importContext.Close() //nolint:errcheck

		result.Cluster = importContext.ClusterID

		if !input.DryRun {
			result.Backup = input.BackupOutput
		}

		return importContext.Run(ctx)
	})

	result.Seconds = time.Since(start).Seconds()
	result.Log = log.String()

	if err != nil {
		result.Error = err.Error()
		result.Validation = errors.Is(err, clusterimport.ErrValidation)
	} else {
		result.OK = true
	}

	if printErr := printJSON(result); printErr != nil {
		return printErr
	}

	if err != nil {
		os.Exit(2)
	}

	return nil
}

func (g *globals) abort(ctx context.Context, c *client.Client, args []string) error {
	if len(args) != 1 || args[0] == "" {
		return errors.New("usage: abort CLUSTER")
	}

	var log bytes.Buffer

	err := clusterimport.Abort(ctx, c.Omni().State(), args[0], io.MultiWriter(&log, os.Stderr))

	out := map[string]any{"cluster": args[0], "ok": err == nil, "log": log.String()}
	if err != nil {
		out["error"] = err.Error()
	}

	if printErr := printJSON(out); printErr != nil {
		return printErr
	}

	if err != nil {
		os.Exit(2)
	}

	return nil
}

// unlock is what omnictl cluster unlock does: drop the lock and import-in-progress annotations
// from the Cluster with a conflict-retrying update.
func (g *globals) unlock(ctx context.Context, c *client.Client, args []string) error {
	if len(args) != 1 || args[0] == "" {
		return errors.New("usage: unlock CLUSTER")
	}

	_, err := safe.StateUpdateWithConflicts(ctx, c.Omni().State(), omnires.NewCluster(args[0]).Metadata(),
		func(cluster *omnires.Cluster) error {
			cluster.Metadata().Annotations().Delete(omnires.ClusterLocked)
			cluster.Metadata().Annotations().Delete(omnires.ClusterImportIsInProgress)

			return nil
		})
	if err != nil {
		return err
	}

	return printJSON(map[string]any{"cluster": args[0], "ok": true})
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")

	return enc.Encode(v)
}
