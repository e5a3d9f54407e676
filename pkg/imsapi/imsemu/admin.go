package imsemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// AdminPrefix is where the emulator serves its controls, without
// authentication: it is meant for loopback.
const AdminPrefix = "/_emulator/"

// adminRoutes serves the Go controls as JSON:
//
//	GET  /_emulator/stats        Stats
//	GET  /_emulator/submissions  []Submission
//	GET  /_emulator/images       []imsapi.Image (of the first region)
//	GET  /_emulator/regions/{region}/images  []imsapi.Image (RegionImages; 404 for an unknown region)
//	GET  /_emulator/images/{image_id}/members  []imsapi.ImageMember (ImageMembers)
//	POST /_emulator/images       seed one imsapi.Image (AddImage); answers it
//	GET  /_emulator/objects      []Object of the catalogue (Objects)
//	POST /_emulator/objects      Object or []Object (PutObject)
//	POST /_emulator/buckets      {"name": "..."} (AddBucket)
//	PUT  /_emulator/faults       Faults (SetFaults)
//	POST /_emulator/failures     FailureRule (AddFailureRule)
//	POST /_emulator/fail-next    {"statuses": [503, 429]} (FailNext; 400 for a status outside 400-599)
func (s *Server) adminRoutes(mux *http.ServeMux) {
	get := func(path string, f func() any) {
		mux.HandleFunc("GET "+AdminPrefix+path, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, "", f())
		})
	}
	post := func(method, path string, f func(body []byte) (any, error)) {
		mux.HandleFunc(method+" "+AdminPrefix+path, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
			var out any
			if err == nil {
				out, err = f(body)
			}
			if err != nil {
				writeJSON(w, http.StatusBadRequest, "", map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, "", out)
		})
	}
	get("stats", func() any { return s.Stats() })
	get("submissions", func() any { return cmpOrEmpty(s.Submissions()) })
	get("images", func() any { return s.Images() })
	get("objects", func() any { return s.Objects() })
	mux.HandleFunc("GET "+AdminPrefix+"regions/{region}/images", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.Region(r.PathValue("region")); !ok {
			writeJSON(w, http.StatusNotFound, "", map[string]string{"error": "unknown region " + r.PathValue("region")})
			return
		}
		writeJSON(w, http.StatusOK, "", s.RegionImages(r.PathValue("region")))
	})
	mux.HandleFunc("GET "+AdminPrefix+"images/{image_id}/members", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, "", cmpOrEmpty(s.ImageMembers(r.PathValue("image_id"))))
	})
	post("POST", "images", func(b []byte) (any, error) {
		var im imsapi.Image
		if err := strictJSON(b, &im); err != nil {
			return nil, err
		}
		return s.AddImage(im), nil
	})
	post("POST", "objects", func(b []byte) (any, error) {
		var objs []Object
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
			if err := strictJSON(b, &objs); err != nil {
				return nil, err
			}
		} else {
			var o Object
			if err := strictJSON(b, &o); err != nil {
				return nil, err
			}
			objs = []Object{o}
		}
		for _, o := range objs {
			if o.Bucket == "" || o.Key == "" || o.Size < 0 {
				return nil, fmt.Errorf("object %+v needs a bucket, a key and a size of 0 or more", o)
			}
		}
		for _, o := range objs {
			s.PutObject(o)
		}
		return map[string]int{"objects": len(objs)}, nil
	})
	post("POST", "buckets", func(b []byte) (any, error) {
		var v struct {
			Name string `json:"name"`
		}
		if err := strictJSON(b, &v); err != nil || v.Name == "" {
			return nil, fmt.Errorf("want {\"name\": \"bucket\"}: %v", err)
		}
		s.AddBucket(v.Name)
		return v, nil
	})
	post("PUT", "faults", func(b []byte) (any, error) {
		var f Faults
		if err := strictJSON(b, &f); err != nil {
			return nil, err
		}
		return f, s.SetFaults(f)
	})
	post("POST", "failures", func(b []byte) (any, error) {
		var fr FailureRule
		if err := strictJSON(b, &fr); err != nil {
			return nil, err
		}
		return fr, s.AddFailureRule(fr)
	})
	post("POST", "fail-next", func(b []byte) (any, error) {
		var v struct {
			Statuses []int `json:"statuses"`
		}
		if err := strictJSON(b, &v); err != nil {
			return nil, err
		}
		return v, s.FailNext(v.Statuses...)
	})
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
