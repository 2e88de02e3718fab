package oracle

import (
	"errors"

	"github.com/hashicorp/go-multierror"
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

// validate loads without validation, then runs the config's own Validate: the verdict Talos gives.
func validate(c *Case) (*Answer, error) {
	cfg, err := loadUnvalidated([]byte(c.Config))
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
		var merr *multierror.Error
		if errors.As(err, &merr) {
			for _, e := range merr.Errors {
				a.Errors = append(a.Errors, e.Error())
			}
		} else {
			a.Errors = []string{err.Error()}
		}
	}

	return a, nil
}
