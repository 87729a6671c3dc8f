//go:build !race

package syncjob_test

// defaultScale: without the race detector TestSyncAtScale runs the whole data set (25,000
// contacts, 2,000 chats, 60,000 messages).
const defaultScale = 1.0
