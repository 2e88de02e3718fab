package main

import (
	"errors"
	"flag"

	"github.com/siderolabs/omni/client/pkg/siderolink"
)

// joinDocs renders the join documents with Omni's own siderolink package, as the importer's
// connect step does: {"config": "<the YAML documents>"}.
func joinDocs(args []string) error {
	fs := flag.NewFlagSet("join-docs", flag.ContinueOnError)
	apiURL := fs.String("url", "", "SiderolinkAPIConfig machine_api_advertised_url")
	token := fs.String("token", "", "DefaultJoinToken token_id")
	events := fs.Int("events-port", 8090, "SiderolinkAPIConfig events_port")
	logs := fs.Int("logs-port", 8092, "SiderolinkAPIConfig logs_port")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *apiURL == "" {
		return errors.New("join-docs needs -url")
	}

	opts, err := siderolink.NewJoinOptions(
		siderolink.WithJoinToken(*token),
		siderolink.WithMachineAPIURL(*apiURL),
		siderolink.WithEventSinkPort(*events),
		siderolink.WithLogServerPort(*logs),
	)
	if err != nil {
		return printJSON(map[string]string{"error": err.Error()})
	}

	out, err := opts.RenderJoinConfig()
	if err != nil {
		return printJSON(map[string]string{"error": err.Error()})
	}

	return printJSON(map[string]string{"config": string(out)})
}
