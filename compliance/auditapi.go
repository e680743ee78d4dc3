package compliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// Page is one page of an audit search. NextAfter, when non-zero, is the
// value of the after parameter that fetches the next page. StableSequence
// is the log's stable sequence read before the page (audit.Log.StableSequence):
// the page holds every matching entry up to it. With several audit chains a
// lagging chain writes entries below sequences already written, so a page
// that has a next page ends at StableSequence when it would pass it, and
// NextAfter is then not above it: a reader paging on never skips the lower
// entries still to come. (Only when every entry of a full page lies above
// it, the chains lagging by more than a page of matches, does the page hold
// them, so that paging goes on.) The last page, without NextAfter, holds
// every match, the newest too; a reader following the log by sequence reads
// on from StableSequence, not from the last entry shown, and may meet some
// entries again.
type Page struct {
	Entries        []audit.Entry `json:"entries"`
	NextAfter      int64         `json:"next_after,omitempty"`
	StableSequence int64         `json:"stable_sequence"`
	// held tells that the page was ended at StableSequence, matching
	// entries above it left for a later page, for the console to say so.
	held bool
}

// search returns one page; it asks for one entry more than the limit to
// know whether there is a next page.
func (s *Server) search(ctx context.Context, f audit.Filter) (*Page, error) {
	// Read before the page, so that the page sees every entry up to it.
	stable, err := s.opts.Audit.StableSequence(ctx)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	f.Limit = limit + 1
	p := &Page{Entries: make([]audit.Entry, 0, limit), StableSequence: stable}
	err = s.opts.Audit.Scan(ctx, f, func(e *audit.Entry) error {
		p.Entries = append(p.Entries, *e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.Entries) <= limit {
		return p, nil
	}
	p.Entries = p.Entries[:limit]
	// Entries come in sequence order: keep those up to the stable
	// sequence, if any.
	if n := sort.Search(limit, func(i int) bool { return p.Entries[i].Sequence > stable }); n > 0 && n < limit {
		p.Entries, p.held = p.Entries[:n], true
	}
	p.NextAfter = p.Entries[len(p.Entries)-1].Sequence
	return p, nil
}

func (s *Server) getEntries(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), audit.DefaultLimit)
	if err != nil {
		s.fail(w, err)
		return
	}
	p, err := s.search(r.Context(), f)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// EntryDetail is one entry with the explanation of its decision.
type EntryDetail struct {
	Entry       audit.Entry  `json:"entry"`
	Explanation *Explanation `json:"explanation"`
}

var errNotFound = errors.New("compliance: not found")

// entry reads the entry with sequence seq.
func (s *Server) entry(ctx context.Context, seq int64) (*audit.Entry, error) {
	var found *audit.Entry
	err := s.opts.Audit.Scan(ctx, audit.Filter{AfterSequence: seq - 1, Limit: 1}, func(e *audit.Entry) error {
		if e.Sequence == seq {
			c := *e
			found = &c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, errNotFound
	}
	return found, nil
}

func parseSeq(v string) (int64, error) {
	seq, err := strconv.ParseInt(v, 10, 64)
	if err != nil || seq < 1 {
		return 0, badParam("seq", "want a sequence number (1 or more)")
	}
	return seq, nil
}

func (s *Server) getEntry(w http.ResponseWriter, r *http.Request) {
	seq, err := parseSeq(r.PathValue("seq"))
	if err != nil {
		s.fail(w, err)
		return
	}
	e, err := s.entry(r.Context(), seq)
	if errors.Is(err, errNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "not_found", Message: "no audit entry with sequence " + strconv.FormatInt(seq, 10)})
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, EntryDetail{Entry: *e, Explanation: Explain(e, s.opts.Registry.Registry())})
}

// export streams the entries selected by the query as CSV or JSON lines.
func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := audit.Format(q.Get("format"))
	q.Del("format")
	switch format {
	case audit.FormatCSV, audit.FormatJSONL:
	case "":
		format = audit.FormatCSV
	default:
		s.fail(w, badParam("format", "want csv or jsonl"))
		return
	}
	f, err := parseFilter(q, 0)
	if err != nil {
		s.fail(w, err)
		return
	}
	if q.Get("limit") == "" {
		f.Limit = 0 // everything that matches, streamed
	}
	name := "clearance-audit-" + s.opts.Now().UTC().Format("20060102T150405Z") + "." + string(format)
	if format == audit.FormatCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-store")
	if !r.ProtoAtLeast(1, 1) {
		s.spooledExport(w, r, format, f, name)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	cw := &countingWriter{w: w}
	n, err := s.opts.Audit.Export(r.Context(), cw, format, f)
	if err == nil {
		return
	}
	if cw.n == 0 {
		// Nothing sent: the answer is still an error, not a file.
		w.Header().Del("Content-Disposition")
		s.fail(w, err)
		return
	}
	s.log.Error("export cut short", "rows", n, "err", err)
	// The status and part of the body are gone: the connection is cut
	// without the end of the chunked body, so that the client sees an
	// incomplete download (curl: "transfer closed with outstanding read
	// data"; a browser: a failed download) rather than a file that looks
	// whole.
	panic(http.ErrAbortHandler)
}

// spooledExport answers an export to an HTTP/1.0 client (or through an
// HTTP/1.0 proxy). HTTP/1.0 has no chunked encoding: a body without a
// length ends when the connection closes, so a cut export (export's
// ErrAbortHandler) would look whole. The export is written to a private
// temporary file (0600, removed once sent) and sent with its
// Content-Length once complete; one that fails is answered 500.
func (s *Server) spooledExport(w http.ResponseWriter, r *http.Request, format audit.Format, f audit.Filter, name string) {
	tmp, err := os.CreateTemp("", "clearance-export-*") // mode 0600
	if err != nil {
		s.fail(w, fmt.Errorf("compliance: export spool: %w", err))
		return
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if _, err := s.opts.Audit.Export(r.Context(), tmp, format, f); err != nil {
		s.fail(w, err)
		return
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		s.fail(w, fmt.Errorf("compliance: export spool: %w", err))
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, tmp); err != nil {
		// The client went away, or the spool could not be read back: the
		// length announced is not reached, which the client sees.
		s.log.Error("export spool send", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// countingWriter counts what passes through it to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request) { s.export(w, r) }

// agreementRef names a version of an agreement as the records of
// processing, a subject's recipients and the what-if write it: "ID vN".
func agreementRef(id string, version int) string { return fmt.Sprintf("%s v%d", id, version) }

// restsOn names what e's transfer rests on: "dpa-swiftship-de v2", or
// "legal order order-2026-113", as the records of processing name it.
func restsOn(e *audit.Entry) string {
	if o := e.LegalOrder(); o != "" {
		return "legal order " + o
	}
	return agreementRef(e.AgreementID, e.AgreementVersion)
}

// Recipient is one recipient of a subject's data (Art. 15(1)(c), Art. 19).
type Recipient struct {
	Recipient  string `json:"recipient"`
	Country    string `json:"country"`
	Deliveries int    `json:"deliveries"`
	// MayHaveReceived counts the failed deliveries that may have reached
	// the recipient (sent, no answer: audit.ReasonMayHaveReceived).
	MayHaveReceived int       `json:"may_have_received"`
	Allowed         int       `json:"allowed"`
	Refused         int       `json:"refused"`
	First           time.Time `json:"first"`
	Last            time.Time `json:"last"`
	Purposes        []string  `json:"purposes"`
	Categories      []string  `json:"categories"`
	Mechanisms      []string  `json:"mechanisms"`
	// LegalBases and Agreements are why and under which contract the
	// allowed transfers went: the legal bases, and the agreements as
	// "ID vN" (the version the decision rested on).
	LegalBases []string `json:"legal_bases"`
	Agreements []string `json:"agreements"`
}

// SubjectReport is what the log holds about one subject: the recipients
// that got (or were allowed) data, and the history of entries.
type SubjectReport struct {
	SubjectHMAC string      `json:"subject_hmac"`
	Recipients  []Recipient `json:"recipients"`
	Entries     int         `json:"entries"`
}

// subjectReport scans every entry of subject in [from, to).
func (s *Server) subjectReport(ctx context.Context, f audit.Filter) (*SubjectReport, error) {
	byRcpt := map[string]*Recipient{}
	rep := &SubjectReport{Recipients: []Recipient{}}
	add := func(list []string, v string) []string {
		if v == "" || slices.Contains(list, v) {
			return list
		}
		return append(list, v)
	}
	err := s.opts.Audit.Scan(ctx, f, func(e *audit.Entry) error {
		rep.Entries++
		rep.SubjectHMAC = e.SubjectHMAC
		if e.Recipient == "" {
			return nil
		}
		rc := byRcpt[e.Recipient]
		if rc == nil {
			rc = &Recipient{Recipient: e.Recipient, First: e.Time, Purposes: []string{}, Categories: []string{}, Mechanisms: []string{},
				LegalBases: []string{}, Agreements: []string{}}
			byRcpt[e.Recipient] = rc
		}
		rc.Last = e.Time
		if e.RecipientCountry != "" {
			rc.Country = e.RecipientCountry
		}
		switch {
		case e.Event == audit.EventDelivered || e.Event == audit.EventReceived:
			rc.Deliveries++
		case e.MayHaveReached():
			rc.MayHaveReceived++
		case e.Event == audit.EventDecided && e.Decision == "allow":
			rc.Allowed++
		case e.Event == audit.EventDecided:
			rc.Refused++
		}
		if e.Decision == "allow" {
			rc.Purposes = add(rc.Purposes, e.Purpose)
			rc.Mechanisms = add(rc.Mechanisms, e.Mechanism)
			rc.LegalBases = add(rc.LegalBases, e.LegalBasis)
			if e.AgreementID != "" {
				rc.Agreements = add(rc.Agreements, restsOn(e))
			}
			for _, c := range e.CategoriesSent {
				rc.Categories = add(rc.Categories, c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, rc := range byRcpt {
		slices.Sort(rc.Purposes)
		slices.Sort(rc.Categories)
		slices.Sort(rc.Mechanisms)
		slices.Sort(rc.LegalBases)
		slices.Sort(rc.Agreements)
		rep.Recipients = append(rep.Recipients, *rc)
	}
	slices.SortFunc(rep.Recipients, func(a, b Recipient) int { return a.First.Compare(b.First) })
	if rep.SubjectHMAC == "" {
		// No entry in the window: the HMAC is still the subject's.
		rep.SubjectHMAC = f.SubjectHMAC
		if rep.SubjectHMAC == "" && f.SubjectID != "" {
			rep.SubjectHMAC = s.subjectHMAC(f.SubjectID)
		}
	}
	return rep, nil
}

func (s *Server) getSubjectRecipients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to"); err != nil {
		s.fail(w, err)
		return
	}
	q.Set("subject", r.PathValue("subject"))
	f, err := parseFilter(q, 0)
	if err != nil {
		s.fail(w, err)
		return
	}
	if f.SubjectID == "" {
		s.fail(w, badParam("subject", "required"))
		return
	}
	rep, err := s.subjectReport(r.Context(), f)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
