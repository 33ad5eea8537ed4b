package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// errSlow: checkNames met a name with an escape; checkStrict decides.
var errSlow = errors.New("escaped name")

// jsonPath is where a value is in the body, built into a string only for
// an error message: a member name of an object or an index of an array.
type jsonPath struct {
	up    *jsonPath
	name  string
	index int // for an array element, with name ""
}

func (p *jsonPath) String() string {
	if p == nil {
		return ""
	}
	up := p.up.String()
	switch {
	case p.name == "":
		return up + "[" + strconv.Itoa(p.index) + "]"
	case up == "":
		return p.name
	}
	return up + "." + p.name
}

// field is the innermost member name: the request field to blame.
func (p *jsonPath) field() string {
	for ; p != nil; p = p.up {
		if p.name != "" {
			return p.name
		}
	}
	return ""
}

// checkNames is checkStrict's check of member names (duplicates, case)
// for a body already known to be valid JSON, without allocating per
// token: a byte scan beside the Go type. Names with a backslash escape are
// left to checkStrict (errSlow).
func checkNames(data []byte, t reflect.Type) error {
	s := nameScanner{data: data}
	s.ws()
	return s.value(t, nil)
}

type nameScanner struct {
	data []byte
	i    int
}

func (s *nameScanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// str skips a string starting at s.i and returns its raw contents and
// whether they hold an escape.
func (s *nameScanner) str() ([]byte, bool) {
	s.i++ // opening quote
	start, esc := s.i, false
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case '\\':
			esc = true
			s.i += 2
			continue
		case '"':
			raw := s.data[start:s.i]
			s.i++
			return raw, esc
		}
		s.i++
	}
	return s.data[start:], esc
}

func (s *nameScanner) value(t reflect.Type, path *jsonPath) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s.i >= len(s.data) {
		return nil
	}
	switch s.data[s.i] {
	case '{':
		return s.object(t, path)
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		s.i++
		for n := 0; ; n++ {
			s.ws()
			if s.i >= len(s.data) || s.data[s.i] == ']' {
				s.i++
				return nil
			}
			if err := s.value(elem, &jsonPath{up: path, index: n}); err != nil {
				return err
			}
			s.ws()
			if s.i < len(s.data) && s.data[s.i] == ',' {
				s.i++
			}
		}
	case '"':
		s.str()
	default: // number, true, false, null
		for s.i < len(s.data) {
			switch s.data[s.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return nil
			}
			s.i++
		}
	}
	return nil
}

func (s *nameScanner) object(t reflect.Type, path *jsonPath) error {
	var fields map[string]reflect.Type
	if t != nil && t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType) {
		fields = jsonFields(t)
	}
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	s.i++
	for {
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] == '}' {
			s.i++
			return nil
		}
		key, esc := s.str()
		if esc {
			return errSlow
		}
		here := func() string { return (&jsonPath{up: path, name: string(key)}).String() }
		for _, k := range seen {
			if bytes.Equal(k, key) {
				return Errorf(CodeInvalidArgument, "request body: field %q given twice", here())
			}
		}
		seen = append(seen, key)
		var ft reflect.Type
		switch {
		case fields != nil:
			var ok bool
			if ft, ok = fields[string(key)]; !ok {
				for name := range fields {
					if strings.EqualFold(name, string(key)) {
						return Errorf(CodeInvalidArgument, "request body: unknown field %q: names are case-sensitive; did you mean %q?", here(), name)
					}
				}
				return Errorf(CodeInvalidArgument, "request body: unknown field %q", here())
			}
		case t != nil && t.Kind() == reflect.Map:
			ft = t.Elem()
		}
		s.ws()
		s.i++ // ':'
		s.ws()
		var child *jsonPath
		if ft != nil && (ft.Kind() == reflect.Struct || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map) {
			child = &jsonPath{up: path, name: string(key)}
		}
		if err := s.value(ft, child); err != nil {
			return err
		}
		s.ws()
		if s.i < len(s.data) && s.data[s.i] == ',' {
			s.i++
		}
	}
}

// checkStrings refuses a NUL byte or U+FFFD in any string of a decoded
// request: every string of the body is in it, since unknown members are
// refused. U+FFFD is also what the decoder puts for an unpaired surrogate
// escape.
func checkStrings(v reflect.Value, path *jsonPath) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return checkStrings(v.Elem(), path)
		}
	case reflect.String:
		if str := v.String(); strings.IndexByte(str, 0) >= 0 || strings.ContainsRune(str, utf8.RuneError) {
			return checkString(path.String(), path.field(), str)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if err := checkStrings(v.Index(i), &jsonPath{up: path, index: i}); err != nil {
				return err
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			p := &jsonPath{up: path, name: fmt.Sprint(iter.Key().Interface())}
			if err := checkStrings(iter.Key(), p); err != nil {
				return err
			}
			if err := checkStrings(iter.Value(), p); err != nil {
				return err
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if sf.Anonymous && name == "" {
				if err := checkStrings(v.Field(i), path); err != nil {
					return err
				}
				continue
			}
			if name == "" {
				name = sf.Name
			}
			if err := checkStrings(v.Field(i), &jsonPath{up: path, name: name}); err != nil {
				return err
			}
		}
	}
	return nil
}
