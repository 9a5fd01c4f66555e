package api

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// endpointPublish, endpointBatch and endpointOther are endpoint labels: the path of a
// route, or "other" for a path the API does not serve.
const (
	endpointPublish = "/api/publish"
	endpointBatch   = "/api/batch"
	endpointOther   = "other"
)

// routes builds the mux and records, for every pattern, the endpoint label
// and the in-flight budget the root handler applies before dispatching.
type routes struct {
	mux     *http.ServeMux
	a       *handler
	allow   map[string][]string // path -> methods registered for it
	order   []string            // paths in registration order
	anyPath map[string]bool     // paths with a method-less pattern of their own
	label   map[string]string   // pattern -> endpoint label
	budget  map[string]chan struct{}
}

func newRoutes(a *handler) *routes {
	return &routes{mux: http.NewServeMux(), a: a, allow: map[string][]string{}, anyPath: map[string]bool{},
		label: map[string]string{}, budget: map[string]chan struct{}{}}
}

// add registers h for pattern ("[METHOD ]PATH") under endpoint (the path
// when empty) with the given budget.
func (rt *routes) add(pattern, endpoint string, budget chan struct{}, h http.Handler) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	if endpoint == "" {
		endpoint = path
	}
	if _, seen := rt.allow[path]; !seen {
		rt.order = append(rt.order, path)
	}
	if method == "" {
		rt.anyPath[path] = true
	}
	rt.allow[path] = append(rt.allow[path], method)
	rt.label[pattern], rt.budget[pattern] = endpoint, budget
	rt.mux.Handle(pattern, h)
}

// finish adds a 405 handler with Allow for every path that only has
// method patterns (paths under /api/ check the API key first), the JSON
// 404 for the rest of /api/, and returns the root handler.
func (rt *routes) finish(main chan struct{}) http.Handler {
	for _, path := range rt.order {
		if rt.anyPath[path] {
			continue
		}
		allow := allowHeader(rt.allow[path])
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
		})
		if strings.HasPrefix(path, "/api/") {
			h = rt.a.authed(h.ServeHTTP)
		}
		method := rt.allow[path][0] + " " + path
		rt.label[path], rt.budget[path] = rt.label[method], rt.budget[method]
		rt.mux.Handle(path, h)
	}
	if !rt.anyPath["/api/"] {
		rt.label["/api/"], rt.budget["/api/"] = endpointOther, main
		rt.mux.HandleFunc("/api/", rt.a.authed(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "no such endpoint")
		}))
	}
	return &root{rt: rt, main: main}
}

// allowHeader is the Allow value for methods: sorted, HEAD wherever GET is.
func allowHeader(methods []string) string {
	ms := slices.Clone(methods)
	if slices.Contains(ms, http.MethodGet) && !slices.Contains(ms, http.MethodHead) {
		ms = append(ms, http.MethodHead)
	}
	slices.Sort(ms)
	return strings.Join(slices.Compact(ms), ", ")
}

// root applies the in-flight budget and the request metrics to every
// request, then lets the mux dispatch it.
type root struct {
	rt   *routes
	main chan struct{}
}

func (h *root) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, pattern := h.rt.mux.Handler(r)
	endpoint, ok := h.rt.label[pattern]
	budget := h.rt.budget[pattern]
	if !ok {
		endpoint, budget = endpointOther, h.main
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() { h.rt.a.metrics.request(endpoint, sw.status(), time.Since(start)) }()
	select {
	case budget <- struct{}{}:
		defer func() { <-budget }()
	default:
		if endpoint == endpointPublish {
			h.rt.a.metrics.published(resultFailed, 1)
		}
		sw.Header().Set("Retry-After", "1")
		writeError(sw, http.StatusServiceUnavailable, "too many API requests in flight (-api-max-inflight); retry shortly")
		return
	}
	h.rt.mux.ServeHTTP(sw, r)
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
