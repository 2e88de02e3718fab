// Package talosclient is the body of the talos-client-X.Y programs: Talos's own Go client
// (machinery's client package, of the release each program's go.mod pins) against a Talos API
// endpoint, such as omniport's lab, printing what it got as JSON.
//
// Usage:
//
//	talos-client-X.Y -talosconfig FILE [-context NAME] [-endpoint HOST] COMMAND [flags]
//
// Commands (each prints one JSON object on stdout; a gRPC error is printed as
// {"error": {"code": "...", "message": "..."}} with exit status 0, so callers can compare codes):
//
//	version  -node N | -nodes A,B,...   MachineService/Version, one-to-one or one-to-many
//	read     -node N                    every COSI resource Omni's importer reads, typed
//	services -node N                    MachineService/ServiceList
//	etcd     -node N                    MachineService/EtcdMemberList
//	get      -node N -ns NS -type T -id ID   one COSI Get, untyped (error codes)
//	apply    -node N|-nodes A,B -file F -mode M [-dry-run] [-try-timeout D]
//	load     -file F                    machinery's config loader on F (no connection needed)
package talosclient

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
	"github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"
)

type errorOut struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// resourceOut is one resource as the typed Go client decoded it.
type resourceOut struct {
	Namespace   string            `json:"namespace"`
	Type        string            `json:"type"`
	ID          string            `json:"id"`
	Version     string            `json:"version"`
	Phase       string            `json:"phase"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// Spec is the typed spec marshalled back to YAML by its own yaml tags (what `talosctl get
	// -o yaml` prints); ConfigBytes is the machine config as machinery's loader holds it.
	Spec        string   `json:"spec"`
	ConfigBytes string   `json:"config_bytes,omitempty"`
	ConfigKinds []string `json:"config_kinds,omitempty"`
}

func Main() {
	global := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	talosconfig := global.String("talosconfig", "", "talosconfig file")
	contextName := global.String("context", "", "talosconfig context (default: current)")
	endpoint := global.String("endpoint", "", "override the context's endpoints")
	_ = global.Parse(os.Args[1:])

	args := global.Args()
	if len(args) == 0 {
		fail(errors.New("missing command"))
	}

	if args[0] == "load" {
		cmd := flag.NewFlagSet("load", flag.ExitOnError)
		file := cmd.String("file", "", "config file")
		_ = cmd.Parse(args[1:])
		emit(load(*file))

		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	opts := []client.OptionFunc{client.WithConfigFromFile(*talosconfig)}
	if *contextName != "" {
		opts = append(opts, client.WithContextName(*contextName))
	}

	if *endpoint != "" {
		opts = append(opts, client.WithEndpoints(*endpoint))
	}

	c, err := client.New(ctx, opts...)
	if err != nil {
		fail(err)
	}

	defer c.Close() //nolint:errcheck

	cmd := flag.NewFlagSet(args[0], flag.ExitOnError)
	node := cmd.String("node", "", "target node (one-to-one)")
	nodes := cmd.String("nodes", "", "target nodes, comma-separated (one-to-many)")
	file := cmd.String("file", "", "config file to apply")
	mode := cmd.String("mode", "AUTO", "apply mode: REBOOT, AUTO, NO_REBOOT, STAGED, TRY")
	dryRun := cmd.Bool("dry-run", false, "apply as a dry run")
	tryTimeout := cmd.Duration("try-timeout", 0, "try mode timeout")
	ns := cmd.String("ns", "", "COSI namespace")
	typ := cmd.String("type", "", "COSI type")
	id := cmd.String("id", "", "COSI id")
	_ = cmd.Parse(args[1:])

	switch {
	case *node != "":
		ctx = client.WithNode(ctx, *node)
	case *nodes != "":
		ctx = client.WithNodes(ctx, strings.Split(*nodes, ",")...)
	}

	var out any

	switch args[0] {
	case "version":
		out, err = version(ctx, c)
	case "read":
		out, err = read(ctx, c)
	case "services":
		out, err = c.ServiceList(ctx)
	case "etcd":
		out, err = c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
	case "get":
		out, err = get(ctx, c, *ns, *typ, *id)
	case "apply":
		out, err = apply(ctx, c, *file, *mode, *dryRun, *tryTimeout)
	default:
		fail(fmt.Errorf("unknown command %q", args[0]))
	}

	if err != nil {
		out = map[string]any{"error": grpcError(err)}
	}

	emit(out)
}

func grpcError(err error) errorOut {
	// The COSI client turns NotFound into its own error type, which carries the status text.
	if state.IsNotFoundError(err) {
		msg := err.Error()
		if i := strings.Index(msg, "desc = "); i >= 0 {
			msg = msg[i+len("desc = "):]
		}

		return errorOut{Code: codes.NotFound.String(), Message: msg}
	}

	if st, ok := status.FromError(err); ok {
		return errorOut{Code: st.Code().String(), Message: st.Message()}
	}

	// Errors the client gathered per node (FilterMessages) are not statuses themselves.
	return errorOut{Code: client.StatusCode(err).String(), Message: err.Error()}
}

func version(ctx context.Context, c *client.Client) (any, error) {
	resp, err := c.Version(ctx)
	if err != nil {
		// One-to-many: FilterMessages keeps the good replies and returns per-node errors.
		if resp == nil {
			return nil, err
		}

		return map[string]any{"messages": resp.Messages, "node_errors": err.Error()}, nil
	}

	return map[string]any{"messages": resp.Messages}, nil
}

func apply(ctx context.Context, c *client.Client, file, mode string, dryRun bool, tryTimeout time.Duration) (any, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}

	value, ok := machine.ApplyConfigurationRequest_Mode_value[mode]
	if !ok {
		return nil, fmt.Errorf("unknown mode %q", mode)
	}

	req := &machine.ApplyConfigurationRequest{
		Data:   data,
		Mode:   machine.ApplyConfigurationRequest_Mode(value),
		DryRun: dryRun,
	}
	if tryTimeout > 0 {
		req.TryModeTimeout = durationpb.New(tryTimeout)
	}

	resp, err := c.ApplyConfiguration(ctx, req)
	if err != nil {
		return nil, err
	}

	items := make([]map[string]any, 0, len(resp.Messages))
	for _, m := range resp.Messages {
		items = append(items, map[string]any{
			"hostname":     m.GetMetadata().GetHostname(),
			"mode":         m.Mode.String(),
			"mode_details": m.ModeDetails,
			"warnings":     m.Warnings,
		})
	}

	return map[string]any{"messages": items}, nil
}

// load is what a node does first with an applied config: machinery's strict loader.
func load(file string) any {
	data, err := os.ReadFile(file)
	if err != nil {
		fail(err)
	}

	provider, err := configloader.NewFromBytes(data)
	if err != nil {
		return map[string]any{"error": errorOut{Code: "InvalidArgument", Message: err.Error()}}
	}

	kinds := []string{}
	for _, doc := range provider.Documents() {
		kinds = append(kinds, doc.Kind())
	}

	return map[string]any{"kinds": kinds}
}

func get(ctx context.Context, c *client.Client, ns, typ, id string) (any, error) {
	r, err := c.COSI.Get(ctx, resource.NewMetadata(ns, typ, id, resource.VersionUndefined))
	if err != nil {
		return nil, err
	}

	return describe(r)
}

// read fetches, typed, what Omni's cluster importer reads from a node, plus the other Talos
// resources the lab serves; each entry is a resource list or an error.
func read(ctx context.Context, c *client.Client) (any, error) {
	st := c.COSI
	out := map[string]any{}

	one := func(name string, r resource.Resource, err error) {
		if err != nil {
			out[name] = map[string]any{"error": grpcError(err)}

			return
		}

		d, derr := describe(r)
		if derr != nil {
			out[name] = map[string]any{"error": errorOut{Code: "Decode", Message: derr.Error()}}

			return
		}

		out[name] = []resourceOut{d}
	}

	many := func(name string, rs []resource.Resource, err error) {
		if err != nil {
			out[name] = map[string]any{"error": grpcError(err)}

			return
		}

		list := make([]resourceOut, 0, len(rs))

		for _, r := range rs {
			d, derr := describe(r)
			if derr != nil {
				out[name] = map[string]any{"error": errorOut{Code: "Decode", Message: derr.Error()}}

				return
			}

			list = append(list, d)
		}

		out[name] = list
	}

	// What clusterimport reads, with the IDs and namespaces it uses.
	members, err := safe.StateListAll[*cluster.Member](ctx, st)
	many(cluster.MemberType, items(members), err)

	mt, err := safe.StateGetByID[*config.MachineType](ctx, st, config.MachineTypeID)
	one(config.MachineTypeType, mt, err)

	apiServer, err := safe.StateGetByID[*k8s.APIServerConfig](ctx, st, k8s.APIServerConfigID)
	one(k8s.APIServerConfigType, apiServer, err)

	scheduler, err := safe.StateGetByID[*k8s.SchedulerConfig](ctx, st, k8s.SchedulerConfigID)
	one(k8s.SchedulerConfigType, scheduler, err)

	cm, err := safe.StateGetByID[*k8s.ControllerManagerConfig](ctx, st, k8s.ControllerManagerConfigID)
	one(k8s.ControllerManagerConfigType, cm, err)

	kubelet, err := safe.StateGetByID[*k8s.KubeletConfig](ctx, st, k8s.KubeletID)
	one(k8s.KubeletConfigType, kubelet, err)

	mc, err := safe.StateGetByID[*config.MachineConfig](ctx, st, config.ActiveID)
	one(config.MachineConfigType, mc, err)

	hostname, err := safe.StateGetByID[*network.HostnameStatus](ctx, st, network.HostnameID)
	one(network.HostnameStatusType, hostname, err)

	sysinfo, err := safe.StateGetByID[*hardware.SystemInformation](ctx, st, hardware.SystemInformationID)
	one(hardware.SystemInformationType, sysinfo, err)

	exts, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, st)
	many(runtime.ExtensionStatusType, items(exts), err)

	info, err := safe.StateGetByID[*cluster.Info](ctx, st, cluster.InfoID)
	one(cluster.InfoType, info, err)

	// Further resources the lab serves.
	identity, err := safe.StateGetByID[*cluster.Identity](ctx, st, cluster.LocalIdentity)
	one(cluster.IdentityType, identity, err)

	nodename, err := safe.StateGetByID[*k8s.Nodename](ctx, st, k8s.NodenameID)
	one(k8s.NodenameType, nodename, err)

	machineStatus, err := safe.StateGetByID[*runtime.MachineStatus](ctx, st, runtime.MachineStatusID)
	one(runtime.MachineStatusType, machineStatus, err)

	versions, err := safe.StateListAll[*runtime.Version](ctx, st)
	many(runtime.VersionType, items(versions), err)

	security, err := safe.StateListAll[*runtime.SecurityState](ctx, st)
	many(runtime.SecurityStateType, items(security), err)

	persistent, err := safe.StateGetByID[*config.MachineConfig](ctx, st, config.PersistentID)
	one(config.MachineConfigType+"/persistent", persistent, err)

	return out, nil
}

func items[T resource.Resource](list safe.List[T], err ...error) []resource.Resource {
	out := make([]resource.Resource, 0, list.Len())
	for r := range list.All() {
		out = append(out, r)
	}

	return out
}

func describe(r resource.Resource) (resourceOut, error) {
	md := r.Metadata()
	d := resourceOut{
		Namespace:   md.Namespace(),
		Type:        md.Type(),
		ID:          md.ID(),
		Version:     md.Version().String(),
		Phase:       md.Phase().String(),
		Labels:      md.Labels().Raw(),
		Annotations: md.Annotations().Raw(),
	}

	if mc, ok := r.(*config.MachineConfig); ok {
		provider := mc.Provider()

		raw, err := provider.Bytes()
		if err != nil {
			return d, err
		}

		d.ConfigBytes = string(raw)
		for _, doc := range provider.Documents() {
			d.ConfigKinds = append(d.ConfigKinds, doc.Kind())
		}

		return d, nil
	}

	spec, err := yaml.Marshal(r.Spec())
	if err != nil {
		return d, err
	}

	d.Spec = string(spec)

	return d, nil
}

func emit(v any) {
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(v); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, os.Args[0]+":", err)
	os.Exit(1)
}
