package workpool

import (
	"sync"
	"testing"
	"time"
)

func TestSubmitRunsJobs(t *testing.T) {
	p := New(Config{Workers: 2, Queue: 4})
	defer p.Close(time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		if !p.Submit(wg.Done) {
			t.Fatal("refused with room in the queue")
		}
	}
	wg.Wait()
}

func TestSubmitRefusesWhenFullAndCounts(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 2})
	release := make(chan struct{})
	started := make(chan struct{})
	if !p.Submit(func() { close(started); <-release }) {
		t.Fatal("first job refused")
	}
	<-started // the worker is busy; the queue is empty
	for i := range 2 {
		if !p.Submit(func() {}) {
			t.Fatalf("job %d refused with room in the queue", i)
		}
	}
	if p.Submit(func() {}) {
		t.Fatal("accepted past the queue bound")
	}
	if p.Refused() != 1 || p.Queued() != 2 {
		t.Fatalf("refused %d, queued %d; want 1, 2", p.Refused(), p.Queued())
	}
	close(release)
	p.Close(time.Second)
	if p.Submit(func() {}) {
		t.Fatal("accepted after Close")
	}
}

func TestCloseDoesNotWaitForeverForABusyWorker(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 1})
	block := make(chan struct{})
	defer close(block)
	p.Submit(func() { <-block })
	start := time.Now()
	p.Close(50 * time.Millisecond)
	if time.Since(start) > 5*time.Second {
		t.Fatal("Close waited for a blocked job")
	}
	p.Close(time.Second) // a second call does nothing
}
