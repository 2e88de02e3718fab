package oracle

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
)

// Field is one node of the v1alpha1 document's type tree as machinery's decoder sees it.
//
// Kind is how yaml.v3 decodes into the Go type: struct, slice, map, string, bool, int, uint,
// float, duration, any (an interface or a type with its own UnmarshalYAML: the decoder accepts
// what that code accepts, so omniport checks nothing inside). Go is the type's name as yaml.v3
// prints it in "cannot unmarshal ... into <Go>" (pointers dereferenced).
type Field struct {
	Kind   string            `json:"kind"`
	Go     string            `json:"go"`
	Fields map[string]*Field `json:"fields,omitempty"`
	Elem   *Field            `json:"elem,omitempty"`
	// Extra is the value type of a struct's inline map: keys beyond Fields go there.
	Extra *Field `json:"extra,omitempty"`
}

func init() {
	register("fields", fields)
}

// fields answers the type tree of v1alpha1.Config (the legacy document) as JSON in Config.
func fields(c *Case) (*Answer, error) {
	tree := describe(reflect.TypeOf(v1alpha1.Config{}), map[reflect.Type]bool{})

	out, err := json.Marshal(tree)
	if err != nil {
		return nil, err
	}

	return &Answer{Config: string(out)}, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func customUnmarshal(t reflect.Type) bool {
	if _, ok := reflect.PointerTo(t).MethodByName("UnmarshalYAML"); ok {
		return true
	}

	_, ok := t.MethodByName("UnmarshalYAML")

	return ok
}

func describe(t reflect.Type, seen map[reflect.Type]bool) *Field {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}

	f := &Field{Go: t.String()}

	switch {
	case t == durationType:
		f.Kind = "duration"
	case customUnmarshal(t) || t.Kind() == reflect.Interface:
		f.Kind = "any"
	case t.Kind() == reflect.Struct:
		f.Kind = "struct"
		if seen[t] { // recursive types: the first description stands for all
			return f
		}

		seen[t] = true
		f.Fields = map[string]*Field{}
		f.Extra = addFields(t, f.Fields, seen)
		delete(seen, t)
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		f.Kind = "slice"
		if t.Elem().Kind() == reflect.Uint8 {
			f.Kind = "bytes"
		} else {
			f.Elem = describe(t.Elem(), seen)
		}
	case t.Kind() == reflect.Map:
		f.Kind = "map"
		f.Elem = describe(t.Elem(), seen)
	case t.Kind() == reflect.String:
		f.Kind = "string"
	case t.Kind() == reflect.Bool:
		f.Kind = "bool"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		f.Kind = "int"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr:
		f.Kind = "uint"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		f.Kind = "float"
	default:
		f.Kind = "any"
	}

	return f
}

func addFields(t reflect.Type, out map[string]*Field, seen map[reflect.Type]bool) *Field {
	var extra *Field

	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}

		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")

		if name == "-" {
			continue
		}

		if strings.Contains(","+opts+",", ",inline,") {
			inner := sf.Type
			for inner.Kind() == reflect.Pointer {
				inner = inner.Elem()
			}

			switch inner.Kind() { //nolint:exhaustive
			case reflect.Struct:
				if more := addFields(inner, out, seen); more != nil {
					extra = more
				}
			case reflect.Map:
				extra = describe(inner.Elem(), seen)
			}

			continue
		}

		if name == "" {
			name = strings.ToLower(sf.Name)
		}

		out[name] = describe(sf.Type, seen)
	}

	return extra
}
