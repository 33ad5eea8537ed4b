package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// errSyntax stops the strict walk at malformed JSON: the decoder proper
// reports it with its own message.
var errSyntax = errors.New("syntax")

// checkStrict walks the JSON value in data beside the Go type it will be
// decoded into and refuses what encoding/json accepts silently: a key
// given twice in one object, a key that matches a field only when case is
// ignored, and strings with a NUL byte or U+FFFD (what the decoder puts in
// place of an unpaired surrogate escape such as "\\ud800").
func checkStrict(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := walk(dec, t, "", "")
	if errors.Is(err, errSyntax) {
		return nil
	}
	return err
}

func walk(dec *json.Decoder, t reflect.Type, path, field string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return errSyntax
	}
	switch tok := tok.(type) {
	case string:
		return checkString(path, field, tok)
	case json.Delim:
		switch tok {
		case '{':
			return walkObject(dec, t, path)
		case '[':
			var elem reflect.Type
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				elem = t.Elem()
			}
			for i := 0; dec.More(); i++ {
				if err := walk(dec, elem, path+"["+strconv.Itoa(i)+"]", field); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return errSyntax
			}
		}
	}
	return nil
}

func walkObject(dec *json.Decoder, t reflect.Type, path string) error {
	var fields map[string]reflect.Type
	if t != nil && t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType) {
		fields = jsonFields(t)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errSyntax
		}
		key, _ := tok.(string)
		kpath := key
		if path != "" {
			kpath = path + "." + key
		}
		if err := checkString(kpath, "", key); err != nil {
			return err
		}
		if seen[key] {
			return Errorf(CodeInvalidArgument, "request body: field %q given twice", kpath)
		}
		seen[key] = true
		var ft reflect.Type
		switch {
		case fields != nil:
			var ok bool
			if ft, ok = fields[key]; !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return Errorf(CodeInvalidArgument, "request body: unknown field %q: names are case-sensitive; did you mean %q?", kpath, name)
					}
				}
				return Errorf(CodeInvalidArgument, "request body: unknown field %q", kpath)
			}
		case t != nil && t.Kind() == reflect.Map:
			ft = t.Elem()
		}
		if err := walk(dec, ft, kpath, key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return errSyntax
	}
	return nil
}

func checkString(path, field, s string) error {
	what := "a string"
	if path != "" {
		what = "field " + strconv.Quote(path)
	}
	var reason string
	switch {
	case strings.IndexByte(s, 0) >= 0:
		reason = "has a NUL byte"
	case strings.ContainsRune(s, utf8.RuneError):
		reason = "has U+FFFD (an unpaired surrogate escape, or a replacement character)"
	default:
		return nil
	}
	e := Errorf(CodeInvalidArgument, "request body: %s %s", what, reason)
	e.Field = field
	return e
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	fieldCache      sync.Map // reflect.Type → map[string]reflect.Type
)

// jsonFields returns the JSON names of a struct's fields, as
// encoding/json sees them, with their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() && !sf.Anonymous {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				continue // its fields are promoted and visited on their own
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, dup := fields[name]; !dup || len(sf.Index) == 1 {
			fields[name] = sf.Type
		}
	}
	fieldCache.Store(t, fields)
	return fields
}

// invalidUTF8At returns the offset of the first byte of data that is not
// part of valid UTF-8.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}
