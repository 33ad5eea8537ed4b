package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/rpc"
)

func TestReportSummary(t *testing.T) {
	if s := (Report{}).Summary("periodic"); !s.InSync || s.Summary() != "in sync" || s.Trigger != "periodic" {
		t.Errorf("empty report: %+v", s)
	}
	r := Report{Changes: []string{"created bridge br100"}, Errors: []error{errors.New("network 2 (br101): no")}}
	want := rpc.ConvergenceReport{Trigger: "start", Changes: []string{"created bridge br100"}, Errors: []string{"network 2 (br101): no"}}
	if d := cmp.Diff(want, r.Summary("start")); d != "" {
		t.Errorf("Summary (-want +got):\n%s", d)
	}
	if got := want.Summary(); got != "1 problems: network 2 (br101): no; repaired: created bridge br100" {
		t.Errorf("summary text %q", got)
	}
	var many Report
	for i := range 2 * rpc.MaxReportItems {
		many.Changes = append(many.Changes, fmt.Sprint("change ", i, strings.Repeat("x", rpc.MaxReportItemLen)))
	}
	s := many.Summary("periodic")
	if len(s.Changes) != rpc.MaxReportItems || s.Changes[len(s.Changes)-1] != fmt.Sprintf("... and %d more", rpc.MaxReportItems+1) {
		t.Errorf("%d changes, last %q", len(s.Changes), s.Changes[len(s.Changes)-1])
	}
	for _, c := range s.Changes {
		if len(c) > rpc.MaxReportItemLen {
			t.Errorf("a change of %d bytes", len(c))
		}
	}
}
