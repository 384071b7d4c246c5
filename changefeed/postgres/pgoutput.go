package postgres

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// parsePgoutput is pglogrepl.Parse of the messages the decoder does not
// parse itself, made safe for any bytes: pglogrepl allocates a Truncate's
// relation ids by the count the message declares before reading them,
// indexes past the end of a message shorter than it declares (a panic),
// and slices a logical message's content by its declared length, which
// reaches past the message into the rest of the buffer when its capacity
// allows (the connection reuses one). Such a message is an error here,
// never a crash, a read of other bytes or a large allocation.
func parsePgoutput(data []byte) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("pgoutput: empty message")
	}
	if len(data) >= 5 && data[0] == 'T' {
		// 'T', relation count (4 bytes), options (1), the ids (4 each).
		if n := uint64(binary.BigEndian.Uint32(data[1:])); uint64(len(data)) < 6+4*n {
			return nil, fmt.Errorf("pgoutput: Truncate of %d relations in %d bytes", n, len(data))
		}
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("pgoutput: malformed %q message: %v", data[0], r)
		}
	}()
	return pglogrepl.Parse(data[:len(data):len(data)])
}
