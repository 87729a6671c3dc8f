//go:build !race

package syncjob_test

// defaultScale: without the race detector TestSyncAtScale runs the whole data set.
const defaultScale = 1.0
