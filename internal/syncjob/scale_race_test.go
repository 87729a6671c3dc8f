//go:build race

package syncjob_test

// defaultScale: under the race detector (about 8 times slower) TestSyncAtScale runs a fifth of the
// full data set by default, to stay within the test budget; SYNC_SCALE=1 runs all of it.
const defaultScale = 0.2
