package publish

import "time"

const ms = time.Millisecond

func nowForTest() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }
