package oracle

import (
	"errors"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
)

// ValidateInput selects Talos's validation mode and options.
type ValidateInput struct {
	Mode   string `json:"mode"`
	Strict bool   `json:"strict"`
}

// mode is a Talos runtime mode as `talosctl validate --mode` names it.
type mode string

func (m mode) String() string        { return string(m) }
func (m mode) RequiresInstall() bool { return m == "metal" }
func (m mode) InContainer() bool     { return m == "container" }

func init() { register("validate", validate) }

// validate is what `talosctl validate` and a node's apply-config do: load the config the normal
// way (a load failure, such as a duplicate or conflicting document, is the verdict and comes back
// as Error), then run the container's Validate. Errors come back as leaves: Validate nests
// multierrors and errors.Join lists, some wrapped with a document's name; each leaf keeps the
// prefixes of the wrappers above it, so one broken rule is one entry.
//
// The loader is the validating one on every minor: machinery 1.14's WithNoValidation skips
// building the container itself (no v1alpha1 document is recognised), so Validate would judge a
// different config than Talos does.
func validate(c *Case) (*Answer, error) {
	cfg, err := configloader.NewFromBytes([]byte(c.Config))
	if err != nil {
		return nil, err
	}

	in := c.Validate
	if in == nil {
		in = &ValidateInput{Mode: "metal"}
	}

	var opts []validation.Option
	if in.Strict {
		opts = append(opts, validation.WithStrict())
	}

	warnings, err := cfg.Validate(mode(in.Mode), opts...)

	a := &Answer{Warnings: warnings}

	if err != nil {
		a.Errors = leaves(err, "")
	}

	return a, nil
}

// leaves flattens nested error lists; a wrapper's own text before its inner error is kept as a
// prefix of every leaf under it.
func leaves(err error, prefix string) []string {
	if err == nil {
		return nil
	}

	var merr *multierror.Error
	if errors.As(err, &merr) && merr != nil {
		outer := prefix + strings.TrimSuffix(err.Error(), merr.Error())
		if err == error(merr) {
			outer = prefix
		}

		var out []string
		for _, e := range merr.Errors {
			out = append(out, leaves(e, outer)...)
		}

		return out
	}

	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, leaves(e, prefix)...)
		}

		return out
	}

	if inner := errors.Unwrap(err); inner != nil {
		if _, isList := inner.(interface{ Unwrap() []error }); isList && strings.HasSuffix(err.Error(), inner.Error()) {
			return leaves(inner, prefix+strings.TrimSuffix(err.Error(), inner.Error()))
		}
	}

	return []string{prefix + err.Error()}
}
