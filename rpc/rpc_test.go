package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// requestTypes are every request body the manager decodes.
func requestTypes() []any {
	return []any{
		&CreateNetworksRequest{}, &GetAllNetworksRequest{}, &NetworkRef{},
		&AllocateForInstanceRequest{}, &InstanceRequest{}, &AddFixedIPRequest{},
		&RemoveFixedIPRequest{}, &AddressRequest{}, &ListFixedIPsRequest{},
		&RegisterHostRequest{}, &HostStateRequest{}, &HostNetworkRequest{},
		&CreateFloatingIPsRequest{}, &FloatingRangeRef{}, &ListFloatingIPsRequest{}, &AllocateFloatingIPRequest{},
		&FloatingIPRequest{}, &FloatingAddressRef{}, &AssociateFloatingIPRequest{}, &ProjectRequest{},
		&FixedAddressRef{}, &QuotaSetRequest{}, &ListHostsRequest{},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // error substring, "" for success
	}{
		{``, ""},
		{`  `, ""},
		{`{"cidr":"10.0.0.0/8","num_networks":3,"network_size":16}`, ""},
		{`{"cidr":"10.0.0.0/8","bogus":1}`, `unknown field "bogus"`},
		{`{"num_networks":"3"}`, `field "num_networks": want int, got JSON string`},
		{`[1,2]`, `want a JSON object, got JSON array`},
		{`{"cidr":"a"} {}`, `trailing data`},
		{`{"cidr":`, `unexpected EOF`},
		{strings.Repeat(" ", MaxRequestBytes+1), `larger than`},
		// Strict beyond encoding/json: duplicates, case, NUL, bad UTF-8.
		{`{"cidr":"10.0.0.0/8","cidr":"192.168.0.0/16"}`, `field "cidr" given twice`},
		{`{"CIDR":"10.0.0.0/8"}`, `unknown field "CIDR": names are case-sensitive; did you mean "cidr"?`},
		{`{"Cidr":"10.0.0.0/8","cidr":"10.0.0.0/8"}`, `did you mean "cidr"`},
		{`{"label":"a\u0000b"}`, `field "label" has a NUL byte`},
		{"{\"label\":\"a\x00b\"}", `invalid character`},
		{"{\"label\":\"caf\xe9\"}", `not valid UTF-8 (first bad byte at offset 13)`},
		{`{"label":"\ud800"}`, `field "label" has U+FFFD`},
		{`{"label":"x","b\u0000":1}`, `has a NUL byte`},
		{`{"enable_dhcp":true,"priority":1,"priority":2}`, `"priority" given twice`},
	} {
		var req CreateNetworksRequest
		err := Decode([]byte(tc.in), &req)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Decode(%.40q) = %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Decode(%.40q) = %v, want invalid_argument with %q", tc.in, err, tc.want)
		}
	}
}

// Nested objects are as strict as the body: requested_networks entries.
func TestDecodeNested(t *testing.T) {
	for _, tc := range []struct{ in, want, field string }{
		{`{"requested_networks":[{"network":"a","network":"b"}]}`, `"requested_networks[0].network" given twice`, ""},
		{`{"requested_networks":[{"Network":"a"}]}`, `unknown field "requested_networks[0].Network": names are case-sensitive; did you mean "network"?`, ""},
		{`{"requested_networks":[{"network":"a"},{"address":"10.0.0.\u0000"}]}`, `"requested_networks[1].address" has a NUL byte`, "address"},
		{`{"macs":["02:00:00:00:00:01","\u0000"]}`, `field "macs[1]" has a NUL byte`, "macs"},
		{`{"instance_uuid":"x","requested_networks":[{"network":"a"}],"macs":["02:00:00:00:00:01"]}`, "", ""},
	} {
		var req AllocateForInstanceRequest
		err := Decode([]byte(tc.in), &req)
		if tc.want == "" {
			if err != nil || len(req.RequestedNetworks) != 1 || req.RequestedNetworks[0].Network != "a" {
				t.Errorf("Decode(%s) = %+v, %v", tc.in, req, err)
			}
			continue
		}
		var re *Error
		if !errors.As(err, &re) || re.Code != CodeInvalidArgument || !strings.Contains(re.Message, tc.want) || re.Field != tc.field {
			t.Errorf("Decode(%s) = %#v, want invalid_argument %q field %q", tc.in, err, tc.want, tc.field)
		}
	}
}

func TestErrorIs(t *testing.T) {
	err := error(Errorf(CodeNotFound, "network %q not found", "x"))
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		t.Errorf("errors.Is mismatch for %v", err)
	}
	for _, c := range []Code{CodeInvalidArgument, CodeNotFound, CodeConflict, CodeUnavailable, CodeInternal, CodeQuotaExceeded, CodeTooLarge} {
		if got := CodeForStatus(strconv.Itoa(c.Status())); got != c {
			t.Errorf("CodeForStatus(%d) = %s, want %s", c.Status(), got, c)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to every request decoder: each either
// fails with invalid_argument or yields a value whose JSON encoding survives
// a round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"cidr":"10.0.0.0/8","num_networks":3,"network_size":16,"enable_dhcp":false,"priority":1}`,
		`{"instance_uuid":"6f1c3c1e-3f7a-4c2b-9d61-1f0e5c6b7a80","project_id":"p","requested_networks":[{"network":"1","address":"10.0.0.5"}],"macs":["02:00:00:00:00:01"]}`,
		`{"address":"10.0.0.2","mac":"02:00:00:00:00:01"}`, `{"network":"private_0"}`, `{"all":true,"limit":5}`,
		`{"pool":"nova","cidr":"203.0.113.0/24","interface":"eth0"}`, `{"project_id":"p1","pool":"nova","auto_assigned":true}`,
		`{"floating_address":"203.0.113.1","fixed_address":"10.0.0.2","reassociate":true,"affect_auto_assigned":false}`,
		`{"project_id":"p1","resource":"floating_ips","limit":-1}`, `{"limit":null}`, `{"after":"203.0.113.1","limit":10}`,
		`null`, `[]`, `"x"`, `{"a":1}`, `{"cidr":"a","cidr":"b"}`, `{"CIDR":"a"}`, `{"label":"\u0000"}`,
		`{"label":"\ud800"}`, "{\"label\":\"\xff\"}", `{"requested_networks":[{"network":"a","Network":"b"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range requestTypes() {
			err := Decode(data, v)
			if err != nil {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("%T: error %v is not invalid_argument", v, err)
				}
				continue
			}
			if !utf8.Valid(data) {
				t.Fatalf("%T: accepted invalid UTF-8 %q", v, data)
			}
			again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%T: re-encode: %v", v, err)
			}
			if strings.Contains(string(b), `\u0000`) || strings.ContainsRune(string(b), utf8.RuneError) || strings.Contains(string(b), `\ufffd`) {
				t.Fatalf("%T: accepted a NUL or U+FFFD: %s", v, b)
			}
			if err := Decode(b, again); err != nil {
				t.Fatalf("%T: decode of own encoding %s: %v", v, b, err)
			}
			// Compared as JSON: an empty list with omitempty comes back nil.
			if b2, _ := json.Marshal(again); string(b2) != string(b) {
				t.Fatalf("%T: round trip changed %s to %s", v, b, b2)
			}
		}
	})
}

func TestAsErrorAndErrorMsg(t *testing.T) {
	errBridge := errors.New("no bridge")
	classes := []Class{{Err: errBridge, Code: CodeConflict}}
	if e := AsError(fmt.Errorf("x: %w", Errorf(CodeUnavailable, "db down")), classes...); e == nil || e.Code != CodeUnavailable || e.Message != "db down" {
		t.Errorf("AsError of a wrapped *Error = %+v, want it as it is", e)
	}
	joined := errors.Join(errors.New("boom"), fmt.Errorf("network 1: %w", errBridge))
	e := AsError(joined, classes...)
	if e == nil || e.Code != CodeConflict || e.Message != joined.Error() {
		t.Errorf("AsError of a joined error = %+v, want conflict with the whole text", e)
	}
	if e := AsError(errors.New("boom"), classes...); e != nil {
		t.Errorf("AsError of an unclassified error = %+v, want nil", e)
	}
	msg := ErrorMsg("_INBOX.1", e)
	if msg.Subject != "_INBOX.1" || msg.Header.Get(HeaderErrorCode) != "409" {
		t.Errorf("ErrorMsg subject %q code header %q", msg.Subject, msg.Header.Get(HeaderErrorCode))
	}
	if got, want := msg.Header.Get(HeaderError), "boom network 1: no bridge"; got != want {
		t.Errorf("error header %q, want %q (one line)", got, want)
	}
	var back Error
	if err := json.Unmarshal(msg.Data, &back); err != nil || back != *e {
		t.Errorf("body %s (%v), want %+v", msg.Data, err, *e)
	}
}

// FuzzStrictFastPath: the byte scan of names and the check of decoded
// strings refuse exactly what the token walk refuses.
func FuzzStrictFastPath(f *testing.F) {
	for _, s := range []string{`{}`, `{"cidr":"a","cidr":"b"}`, `{"CIDR":"a"}`, `{"label":"\u0000"}`, `{"label":"\ud800"}`,
		`{"requested_networks":[{"network":"a","Network":"b"}]}`, `{"\u0063idr":"x"}`, `{"macs":["a","\u0000"]}`,
		`{"requested_networks":[{"network":"a"},{"network":"b","address":"c"}],"project_id":"p"}`,
		`{"enable_dhcp":true,"priority":1}`, `{"priority":null,"label":"x\"y"}`, `{"label":"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		for _, v := range requestTypes() {
			dec := json.NewDecoder(strings.NewReader(string(data)))
			dec.DisallowUnknownFields()
			if dec.Decode(v) != nil {
				continue
			}
			typ := reflect.TypeOf(v)
			slow := checkStrict(data, typ)
			fast := checkNames(data, typ)
			if errors.Is(fast, errSlow) {
				fast = slow
			}
			if fast == nil {
				fast = checkStrings(reflect.ValueOf(v), nil)
			}
			if (fast == nil) != (slow == nil) {
				t.Fatalf("%T %q: fast path %v, token walk %v", v, data, fast, slow)
			}
		}
	})
}
