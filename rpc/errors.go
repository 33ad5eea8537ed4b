package rpc

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Class is an error class, a sentinel error matched with errors.Is, and
// the code errors of that class are sent with.
type Class struct {
	Err  error
	Code Code
}

// AsError returns the *Error to send for err, as the manager and the agent
// both do at their API edge: an *Error in err's chain as it is; else an
// *Error with err's text and the code of the first class err is of; else
// nil, for the caller's own fallback (the manager logs the details and
// sends internal; the agent sends internal with the details).
func AsError(err error, classes ...Class) *Error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	for _, c := range classes {
		if errors.Is(err, c.Err) {
			return &Error{Code: c.Code, Message: err.Error()}
		}
	}
	return nil
}

// header is the error reply's Nats-Service-Error-Code (the code's status)
// and Nats-Service-Error (the message on one line: a header cannot hold a
// newline, which errors.Join puts between errors).
func (e *Error) header() (status, description string) {
	return strconv.Itoa(e.Code.Status()), strings.Join(strings.Fields(e.Message), " ")
}

func (e *Error) body() []byte {
	b, err := json.Marshal(e)
	if err != nil { // an Error is strings only
		panic(err)
	}
	return b
}

// RespondError replies to req with e through micro's req.Error, so that
// the service's $SRV.STATS counts it.
func RespondError(req micro.Request, e *Error) error {
	status, desc := e.header()
	return req.Error(status, desc, e.body())
}

// ErrorMsg returns the error reply carrying e as a message to publish on
// subject: for replies sent after the micro handler returned (the
// manager's workers), where req.Error cannot be used. Its headers and body
// are RespondError's.
func ErrorMsg(subject string, e *Error) *nats.Msg {
	status, desc := e.header()
	msg := &nats.Msg{Subject: subject, Data: e.body(), Header: nats.Header{}}
	msg.Header.Set(HeaderErrorCode, status)
	msg.Header.Set(HeaderError, desc)
	return msg
}
