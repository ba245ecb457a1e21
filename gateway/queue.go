package gateway

import (
	"context"
	"errors"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/smtpd"
)

// openQueue opens the process's queue (cfg.QueueDir(), locked: one
// gateway per directory) and gives it to the SMTP server. Listen calls
// it, not build: sluice check builds a gateway while another may run.
func (g *Gateway) openQueue() error {
	q := g.cfg.Queue
	var err error
	g.queue, err = queue.Open(g.cfg.QueueDir(), queue.Options{
		MaxAge:            q.MaxAge.D(),
		DelayWarning:      q.DelayWarning.D(),
		MinBackoff:        q.MinBackoff.D(),
		MaxBackoff:        q.MaxBackoff.D(),
		Concurrency:       q.Concurrency,
		DomainConcurrency: q.DomainConcurrency,
		Logger:            g.log,
		Metrics:           g.metrics.queue,
	})
	if err != nil {
		return err
	}
	g.smtp.UseQueue(g.queue)
	if g.submission != nil {
		g.submission.UseQueue(g.queue)
	}
	return nil
}

// Queue is the process's queue: nil before Listen opened it.
func (g *Gateway) Queue() *queue.Queue { return g.queue }

// runQueue delivers queued mail until ctx ends, with the relay of the
// generation current at each attempt.
func (g *Gateway) runQueue(ctx context.Context) {
	g.queue.Run(ctx, queueDeliverer{g.gens}, g.newNotifier(g.cfg, g.queue))
}

// queueDeliverer delivers queued messages through the relay of the
// generation current when the attempt starts, so that a reload's
// [relay] settings apply to the next attempt.
type queueDeliverer struct{ gens *smtpd.Generations }

func (d queueDeliverer) Deliver(ctx context.Context, m *queue.Message, rcpts []queue.Recipient) []queue.Result {
	res := make([]queue.Result, len(rcpts))
	fill := func(r queue.Result, only []bool) []queue.Result {
		for i := range res {
			if only == nil || only[i] {
				res[i] = r
			}
		}
		return res
	}
	gen := d.gens.Acquire()
	if gen == nil {
		return fill(queue.Result{Code: 421, Reply: "421 4.3.2 the gateway is shutting down"}, nil)
	}
	defer gen.Release()
	opts := &smtp.MailOptions{UTF8: m.UTF8, RequireTLS: m.RequireTLS, Size: int64(len(m.Data))}
	if m.TLSReport {
		ctx = relay.ForTLSReport(ctx)
	}
	txn, rcptErr, err := gen.Relay.Begin(ctx, m.Domain(), m.From, opts, rcpts[0].To)
	if err != nil {
		return fill(asResult(err, ""), nil)
	}
	defer txn.Close()
	remote := txn.Remote()
	accepted := make([]bool, len(rcpts))
	some := false
	first := map[string]int{} // To → its first recipient
	for i, r := range rcpts {
		// Two recipients that went to one mailbox (each kept for its
		// DSN) make one RCPT, one copy, and share its result.
		if j, ok := first[r.To]; ok {
			res[i], accepted[i] = res[j], accepted[j]
			continue
		}
		first[r.To] = i
		if i > 0 {
			rcptErr = txn.Rcpt(ctx, r.To)
		}
		if rcptErr != nil {
			res[i] = asResult(rcptErr, remote)
			continue
		}
		accepted[i], some = true, true
	}
	if !some {
		return res
	}
	// The whole message in one part: it was signed when queued.
	reply, err := txn.Data(ctx, m.Data)
	if err != nil {
		return fill(asResult(err, remote), accepted)
	}
	return fill(queue.Result{Code: reply.Code, Reply: relay.ReplyText(reply), Remote: remote}, accepted)
}

// asResult is a relay error as the queue keeps it: the reply, as the
// client of a session would read it, or the error with no code
// (temporary).
func asResult(err error, remote string) queue.Result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return queue.Result{Code: se.Code, Reply: relay.ReplyText(se), Remote: remote}
	}
	return queue.Result{Reply: err.Error(), Remote: remote}
}
