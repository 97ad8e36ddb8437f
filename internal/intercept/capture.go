package intercept

import "net/http"

// leaseBodyCap bounds the link answer remembered for a replay; a larger
// answer is forwarded but not leased.
const leaseBodyCap = 64 << 10

// captureWriter streams the forwarded answer to the client while keeping
// its status and the first leaseBodyCap bytes of its body (none when noBody).
type captureWriter struct {
	http.ResponseWriter
	noBody    bool
	status    int
	body      []byte
	truncated bool
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 { // 1xx answers are not the final status
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if !c.truncated && !c.noBody {
		if len(c.body)+len(p) > leaseBodyCap {
			c.truncated, c.body = true, nil
		} else {
			c.body = append(c.body, p...)
		}
	}
	return c.ResponseWriter.Write(p)
}

// Flush lets the ReverseProxy flush through the wrapper.
func (c *captureWriter) Flush() {
	_ = http.NewResponseController(c.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
