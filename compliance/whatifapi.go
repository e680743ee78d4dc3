package compliance

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clearance-broker/clearance/agreements"
)

// Upload limits of a proposed registry.
const (
	maxRegistryBytes = 8 << 20
	maxRegistryFiles = 200
)

// whatIfParams are the query (or form) parameters of a what-if.
var whatIfParams = []string{"from", "to", "recipient", "purpose", "country", "max"}

// parseWhatIfQuery reads the window and filters of a what-if.
func (s *Server) parseWhatIfQuery(q url.Values) (WhatIfQuery, error) {
	wq := WhatIfQuery{Max: s.opts.MaxWhatIf}
	if err := onlyParams(q, whatIfParams...); err != nil {
		return wq, err
	}
	var err error
	if wq.From, wq.To, err = window(q, s.opts.Now(), 30); err != nil {
		return wq, err
	}
	f, err := parseFilter(url.Values{"recipient": q["recipient"], "purpose": q["purpose"], "country": q["country"]}, 0)
	if err != nil {
		return wq, err
	}
	wq.Recipient, wq.Purpose, wq.Country = f.Recipient, f.Purpose, f.Country
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.opts.MaxWhatIf {
			return wq, badParam("max", "want a number from 1 to "+strconv.Itoa(s.opts.MaxWhatIf))
		}
		wq.Max = n
	}
	return wq, nil
}

// readProposal reads a proposed registry from a multipart upload (one or
// more "registry" file parts) or a JSON body {"files": {"name.yaml": "..."}}.
// Problems in the files are reported as a parameter error naming file, line
// and key.
func readProposal(r *http.Request) (*agreements.Registry, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, badParam("Content-Type", "want multipart/form-data or application/json")
	}
	var files []agreements.File
	switch mt {
	case "multipart/form-data":
		if err := r.ParseMultipartForm(maxRegistryBytes); err != nil {
			return nil, badParam("registry", "unreadable multipart body (at most 8 MiB)")
		}
		for _, fh := range r.MultipartForm.File["registry"] {
			f, err := fh.Open()
			if err != nil {
				return nil, badParam("registry", "unreadable file part")
			}
			data, err := io.ReadAll(io.LimitReader(f, maxRegistryBytes))
			_ = f.Close()
			if err != nil {
				return nil, badParam("registry", "unreadable file part")
			}
			files = append(files, agreements.File{Name: filepath.Base(fh.Filename), Data: data})
		}
	case "application/json":
		var body struct {
			Files map[string]string `json:"files"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, maxRegistryBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return nil, badParam("files", "want a JSON object {\"files\": {\"name.yaml\": \"content\"}}")
		}
		for name, content := range body.Files {
			files = append(files, agreements.File{Name: filepath.Base(name), Data: []byte(content)})
		}
	default:
		return nil, badParam("Content-Type", "want multipart/form-data or application/json")
	}
	if len(files) == 0 {
		return nil, badParam("registry", "no registry file uploaded")
	}
	if len(files) > maxRegistryFiles {
		return nil, badParam("registry", "at most "+strconv.Itoa(maxRegistryFiles)+" files")
	}
	for _, f := range files {
		if ext := filepath.Ext(f.Name); ext != ".yaml" && ext != ".yml" {
			return nil, badParam("registry", "file "+f.Name+" is not .yaml or .yml")
		}
	}
	reg, err := agreements.Parse(files...)
	if err != nil {
		var lines []string
		for _, p := range agreements.Problems(err) {
			lines = append(lines, p.Error())
		}
		return nil, badParam("registry", "the proposed registry is invalid: "+strings.Join(lines, "; "))
	}
	return reg, nil
}

func (s *Server) postWhatIf(w http.ResponseWriter, r *http.Request) {
	res, err := s.runWhatIf(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// runWhatIf handles the API and the console's form alike: the window and
// filters come from the query string, or from form fields of a multipart
// upload.
func (s *Server) runWhatIf(r *http.Request) (*WhatIfResult, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, maxRegistryBytes+1<<20)
	proposed, err := readProposal(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if r.MultipartForm != nil {
		for k, v := range r.MultipartForm.Value {
			for _, x := range v {
				if x != "" {
					q.Add(k, x)
				}
			}
		}
	}
	wq, err := s.parseWhatIfQuery(q)
	if err != nil {
		return nil, err
	}
	res, err := WhatIfInForce(r.Context(), s.opts.Audit, s.runtimeChanges(), s.opts.Registry.Registry(), proposed, s.opts.SubjectKey, wq)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// runtimeChanges returns the live registry's store, whose run-time changes
// a what-if carries over a proposal: the registry store given as
// Options.Versions (*policy.Store, under clearance dev and serve), or nil
// without one (then no run-time change exists: the registry in force is
// the one given).
func (s *Server) runtimeChanges() RuntimeChanges {
	rc, _ := s.opts.Versions.(RuntimeChanges)
	return rc
}
