package imsconfig

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v10"
)

// ParseEnv fills v, a pointer to a struct of `env` tags, from environ (nil:
// the process environment), as every imsflow command and function reads
// its settings. Its error names each environment variable whose value is
// wrong, all of them, never a Go field: "IMPORT_BITMAP_WAIT: time: invalid
// duration "x"".
func ParseEnv(v any, environ map[string]string) error {
	opts := env.Options{}
	if environ != nil {
		opts.Environment = environ
	}
	err := env.ParseWithOptions(v, opts)
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	if opts.Environment == nil {
		opts.Environment = env.ToMap(os.Environ())
	}
	leaves := envFields(reflect.ValueOf(v), "")
	problems := make(EnvError, 0, len(agg.Errors))
	named := map[string]bool{}
	for _, e := range agg.Errors {
		problems = append(problems, nameVariable(e, leaves, named, opts.Environment))
	}
	return problems
}

// EnvError lists every environment variable ParseEnv could not read.
type EnvError []error

func (e EnvError) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e EnvError) Unwrap() []error { return e }

// VariableError is a variable whose value could not be read.
type VariableError struct {
	// Name is the environment variable, Err what is wrong with its value.
	Name string
	Err  error
}

func (e *VariableError) Error() string { return e.Name + ": " + e.Err.Error() }

func (e *VariableError) Unwrap() error { return e.Err }

// envField is a settable struct field that env reads, and its variable.
type envField struct {
	field reflect.StructField
	key   string
}

// envFields walks v's struct the way env does (exported fields, nested
// structs and non-nil pointers to structs, envPrefix) and returns every
// field with an env key, in env's order.
func envFields(v reflect.Value, prefix string) []envField {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []envField
	t := v.Type()
	for i := range t.NumField() {
		f, sf := v.Field(i), t.Field(i)
		if !f.CanSet() {
			continue
		}
		inner := prefix + sf.Tag.Get("envPrefix")
		switch {
		case f.Kind() == reflect.Pointer && !f.IsNil():
			out = append(out, envFields(f, inner)...)
			continue
		case f.Kind() == reflect.Struct && f.Type().Name() == "":
			out = append(out, envFields(f, inner)...)
			continue
		}
		if key := ownKey(sf); key != "" {
			out = append(out, envField{sf, prefix + key})
		}
		if f.Kind() == reflect.Struct {
			out = append(out, envFields(f, inner)...)
		}
	}
	return out
}

// ownKey is a field's variable without any prefix.
func ownKey(sf reflect.StructField) string {
	key, _, _ := strings.Cut(sf.Tag.Get("env"), ",")
	return key
}

// nameVariable rewrites one of env's errors to name the variable. A
// ParseError names a Go field, which may occur in several nested structs:
// it is the first of those, in env's order and not named yet, whose value
// does not parse.
func nameVariable(err error, fields []envField, named map[string]bool, environ map[string]string) error {
	var pe env.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	var same []string
	for _, f := range fields {
		if f.field.Name != pe.Name || f.field.Type != pe.Type || named[f.key] {
			continue
		}
		same = append(same, f.key)
		if !parses(f, environ) {
			named[f.key] = true
			return &VariableError{Name: f.key, Err: readable(pe.Err, pe.Type)}
		}
	}
	if len(same) == 0 {
		return err
	}
	return &VariableError{Name: strings.Join(same, " or "), Err: readable(pe.Err, pe.Type)}
}

// parses reports whether f's value in environ (or its default) parses on
// its own.
func parses(f envField, environ map[string]string) bool {
	one := reflect.StructOf([]reflect.StructField{{Name: "V", Type: f.field.Type, Tag: f.field.Tag}})
	opts := env.Options{Environment: map[string]string{}}
	if v, ok := environ[f.key]; ok {
		opts.Environment[ownKey(f.field)] = v
	}
	var agg env.AggregateError
	if !errors.As(env.ParseWithOptions(reflect.New(one).Interface(), opts), &agg) {
		return true
	}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			return false
		}
	}
	return true
}

// readable says what is wrong with a number or a boolean in words; other
// errors (a duration's, a URL's) already do.
func readable(err error, typ reflect.Type) error {
	var pv env.ParseValueError
	if errors.As(err, &pv) {
		err = pv.Err // "unable to parse duration: time: invalid duration" says it twice
	}
	var ne *strconv.NumError
	if !errors.As(err, &ne) {
		return err
	}
	want := "a number"
	switch typ.Kind() {
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		want = "a whole number"
	}
	if errors.Is(ne.Err, strconv.ErrRange) {
		return fmt.Errorf("%q is out of range", ne.Num)
	}
	return fmt.Errorf("%q is not %s", ne.Num, want)
}
