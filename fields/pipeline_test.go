package fields_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phicrypt/phicrypt/envelope"
	"github.com/phicrypt/phicrypt/fields"
)

// addAll adds ps to a new pipeline and returns Wait's error, or the first
// error of Add.
func addAll(ctx context.Context, c *fields.Codec, ps []*pair) error {
	pl := c.OpenPipeline(ctx)
	for _, p := range ps {
		if err := pl.Add(p); err != nil {
			return fmt.Errorf("%w (Wait: %w)", err, pl.Wait())
		}
	}
	return pl.Wait()
}

// TestPipelineOpens: records added one by one, in sizes below, at and
// above a chunk, are all opened, as Open opens them in a slice.
func TestPipelineOpens(t *testing.T) {
	c := newCodec(t, fields.Config{})
	for _, n := range []int{0, 1, 255, 256, 257, 3000} {
		ps := scannedPairs(t, c, n)
		require.NoError(t, addAll(context.Background(), c, ps), "n=%d", n)
		for i, p := range ps {
			require.Equal(t, fmt.Sprint("a", i), p.A.Get(), "n=%d", n)
			require.Equal(t, fmt.Sprint("b", i), p.B.Get(), "n=%d", n)
		}
	}
}

// TestPipelineMixedTypes: records of two types in one pipeline are each
// opened with their own type's plan.
func TestPipelineMixedTypes(t *testing.T) {
	ctx := context.Background()
	c := newCodec(t, fields.Config{})
	ps := scannedPairs(t, c, 600)
	type note struct {
		ID       int           `phi:"id,table=notes"`
		TenantID string        `phi:"scope"`
		Text     fields.String `phi:"encrypt"`
	}
	ws := make([]*note, len(ps))
	for i := range ws {
		w := &note{ID: i + 1, TenantID: "tenant:spread", Text: fields.New(fmt.Sprint("note ", i))}
		require.NoError(t, c.Seal(ctx, w))
		ct, _ := w.Text.Value()
		ws[i] = &note{ID: w.ID, TenantID: w.TenantID}
		require.NoError(t, ws[i].Text.Scan(ct))
	}
	pl := c.OpenPipeline(ctx)
	for i := range ps {
		require.NoError(t, pl.Add(ps[i]))
		require.NoError(t, pl.Add(ws[i]))
	}
	require.NoError(t, pl.Wait())
	for i := range ps {
		require.Equal(t, fmt.Sprint("a", i), ps[i].A.Get())
		require.Equal(t, fmt.Sprint("note ", i), ws[i].Text.Get())
	}
}

// TestPipelineFirstError: with failing records in two chunks, Wait
// returns the first one's error even when the later chunk fails sooner,
// and every record before it is opened; Add stops taking records once a
// failure is known.
func TestPipelineFirstError(t *testing.T) {
	c := newCodec(t, fields.Config{})
	for range 20 {
		ps := scannedPairs(t, c, 1024)
		// Record 255 ends the first chunk, 256 starts the second: the
		// second chunk's goroutine fails first.
		ps[255].ID = "moved" // its values were bound to id 255
		ps[256].TenantID = "tenant:other"
		pl := c.OpenPipeline(context.Background())
		for _, p := range ps {
			if pl.Add(p) != nil {
				break
			}
		}
		err := pl.Wait()
		requireFailedAt255(t, err, ps)
		// A second Wait says the same; Add is refused.
		assert.Equal(t, err, pl.Wait())
		assert.ErrorIs(t, pl.Add(ps[0]), fields.ErrPipelineDone)
	}
}

// TestPipelineSmallFailure: a failure among fewer records than a chunk,
// opened by Wait itself.
func TestPipelineSmallFailure(t *testing.T) {
	c := newCodec(t, fields.Config{})
	ps := scannedPairs(t, c, 10)
	ps[7].ID = "moved"
	err := addAll(context.Background(), c, ps)
	require.ErrorIs(t, err, envelope.ErrDecrypt)
	assert.True(t, ps[6].B.Opened())
	assert.False(t, ps[7].A.Opened())
}

// TestPipelineCanceled: a canceled context stops the pipeline, at Add or
// at Wait, also on a single processor.
func TestPipelineCanceled(t *testing.T) {
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		prev := runtime.GOMAXPROCS(procs)
		c := newCodec(t, fields.Config{})
		ps := scannedPairs(t, c, 1024)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, addAll(ctx, c, ps), context.Canceled, "GOMAXPROCS=%d", procs)
		assert.False(t, ps[len(ps)-1].A.Opened())
		runtime.GOMAXPROCS(prev)
	}
}

// TestPipelineRefuses: Add takes only non-nil pointers to tagged structs.
func TestPipelineRefuses(t *testing.T) {
	c := newCodec(t, fields.Config{})
	pl := c.OpenPipeline(context.Background())
	for _, v := range []any{nil, pair{}, (*pair)(nil), []*pair{{}}, new(int)} {
		assert.ErrorIs(t, pl.Add(v), fields.ErrUnsupported, "%T", v)
	}
	var te *fields.TagError
	assert.ErrorAs(t, pl.Add(&struct {
		A fields.String `phi:"encrypt"`
	}{}), &te)
	require.NoError(t, pl.Wait())
}
