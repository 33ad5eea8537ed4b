package agent

import (
	"context"
	"fmt"

	"novanet/hostnet"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// errorClasses are the host's error classes and the codes the agent
// replies with, the manager's codes (docs/rpc.md): what clashes with the
// host's state is conflict (the flat network's bridge is missing, a port
// is another bridge's, a link of the name is of another kind), what the
// network names and the host lacks is not_found, a network or floating IP
// the host cannot use is invalid_argument, and a convergence out of time
// is unavailable. Anything else is internal.
var errorClasses = []rpc.Class{
	{Err: hostnet.ErrNoBridge, Code: rpc.CodeConflict},
	{Err: hostnet.ErrPortInUse, Code: rpc.CodeConflict},
	{Err: link.ErrMismatch, Code: rpc.CodeConflict},
	{Err: link.ErrNotFound, Code: rpc.CodeNotFound},
	{Err: hostnet.ErrInvalidNetwork, Code: rpc.CodeInvalidArgument},
	{Err: context.DeadlineExceeded, Code: rpc.CodeUnavailable},
}

// replyError is the error reply to method on host for err (a report's
// errors joined): the code of the manager's own *rpc.Error in it (say, the
// desired state could not be read), else of the first class that matches,
// else internal; the message is err's, after the method and the host.
func replyError(method, host string, err error) *rpc.Error {
	code, field := rpc.CodeInternal, ""
	if e := rpc.AsError(err, errorClasses...); e != nil {
		code, field = e.Code, e.Field
	}
	return &rpc.Error{Code: code, Message: fmt.Sprintf("%s on %s: %v", method, host, err), Field: field}
}
