package agent

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"novanet/rpc"
)

// Summary is the report of a full convergence as the manager keeps it:
// in sync, or what it changed and could not do, cut to rpc's limits.
func (r Report) Summary(trigger string) rpc.ConvergenceReport {
	out := rpc.ConvergenceReport{Trigger: trigger, Changes: clip(r.Changes), Errors: []string{}}
	var errs []string
	for _, e := range r.Errors {
		errs = append(errs, e.Error())
	}
	out.Errors = clip(errs)
	out.InSync = len(out.Changes) == 0 && len(out.Errors) == 0
	return out
}

// clip keeps at most rpc.MaxReportItems items of at most
// rpc.MaxReportItemLen bytes, the last one saying how many were left out.
func clip(items []string) []string {
	out := []string{}
	for i, s := range items {
		if i == rpc.MaxReportItems-1 && len(items) > rpc.MaxReportItems {
			out = append(out, fmt.Sprintf("... and %d more", len(items)-i))
			break
		}
		if len(s) > rpc.MaxReportItemLen {
			s = s[:rpc.MaxReportItemLen-3] + "..."
		}
		out = append(out, s)
	}
	return out
}

// reportConvergence sends the manager the summary of a full convergence.
// A report that does not arrive is logged; the next convergence sends a
// new one.
func (a *Agent) reportConvergence(ctx context.Context, trigger string, rep Report, cerr error) {
	if cerr != nil && len(rep.Errors) == 0 {
		rep.Errors = []error{cerr} // it did not get as far as the networks
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var info rpc.HostInfo
	err := a.mgr.Call(ctx, rpc.HostMethod(a.cfg.Host, rpc.MethodReportConvergence), rep.Summary(trigger), &info)
	if err != nil {
		a.log.Warn("report convergence to the manager", zap.String("trigger", trigger), zap.Error(err))
	}
}
