package engine

// connPage is how many connections one page of a connList holds.
const connPage = 512

// connList is a loop's connections, indexed by their session's Slot. It
// grows a fixed-size page at a time, so a loop gaining connections never
// copies the list or leaves the old copy behind as garbage (with a slice,
// the copies made while growing to n entries add up to several times n
// pointers, which an idle server's RSS keeps).
type connList struct {
	pages []*[connPage]*conn
	n     int
}

func (cl *connList) len() int { return cl.n }

func (cl *connList) at(i int) *conn { return cl.pages[i/connPage][i%connPage] }

func (cl *connList) set(i int, e *conn) { cl.pages[i/connPage][i%connPage] = e }

// push appends e and sets its Slot.
func (cl *connList) push(e *conn) {
	if cl.n == len(cl.pages)*connPage {
		cl.pages = append(cl.pages, new([connPage]*conn))
	}
	e.Slot = int32(cl.n)
	cl.set(cl.n, e)
	cl.n++
}

// remove takes e out, moving the last connection into its slot.
func (cl *connList) remove(e *conn) {
	last := cl.n - 1
	moved := cl.at(last)
	cl.set(int(e.Slot), moved)
	moved.Slot = e.Slot
	cl.set(last, nil)
	cl.n--
	// Keep one spare page so a loop hovering at a page boundary does not
	// allocate and drop a page per connection.
	if p := len(cl.pages); p >= 2 && cl.n <= (p-2)*connPage {
		cl.pages[p-1] = nil
		cl.pages = cl.pages[:p-1]
	}
}
