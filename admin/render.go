package admin

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText renders the report as `changecast leases list` prints it.
func (r *LeaseReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if st := r.Slot; st != nil {
		if !st.Exists {
			fmt.Fprintf(w, "slot %s does not exist yet: the first worker creates it\n", st.Slot)
			return nil
		}
		lag, owner, age := "-", dash(st.Owner), "-"
		if st.LagBytes != nil {
			lag = fmt.Sprintf("%d bytes", *st.LagBytes)
		}
		if st.LeaseAge != 0 {
			age = st.LeaseAge.String()
		}
		fmt.Fprintln(tw, "SLOT\tACTIVE\tCONFIRMED_FLUSH_LSN\tLAG\tWAL_STATUS\tOWNER\tAGE")
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\n", st.Slot, st.Active, st.ConfirmedFlushLSN, lag, st.WALStatus, owner, age)
		if st.LeaseError != "" {
			defer fmt.Fprintf(w, "lease table: %s\n", st.LeaseError)
		}
		return tw.Flush()
	}
	fmt.Fprintf(w, "processor %s, leases %s..*\n", r.Processor, r.Prefix)
	fmt.Fprintln(tw, "LEASE\tOWNER\tRANGE\tCONTINUATION\tLAG\tAGE")
	for _, l := range r.Leases {
		lag := "-"
		switch {
		case l.LagError != "":
			lag = "error: " + l.LagError
			if len(lag) > 60 {
				lag = lag[:60] + "…"
			}
		case l.Lag != nil:
			lag = fmt.Sprint(*l.Lag)
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s, %s)\t%s\t%s\t%s\n", l.Token, dash(l.Owner), l.Range.Min, l.Range.Max, l.Continuation, lag, l.Age)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Leases) == 0 {
		fmt.Fprintln(w, "no leases yet: the first worker creates them (source.cosmos.startFrom applies then)")
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// String is what `changecast checkpoint reset` prints.
func (r *Reset) String() string {
	if r.Resnapshot {
		return fmt.Sprintf("asked the worker streaming slot %s to republish every row of its tables; it runs in the background, beside the stream (see the worker's log)", r.Slot)
	}
	if r.Slot != "" {
		return fmt.Sprintf("slot %s now at %s; the worker resumes from there", r.Slot, r.LSN)
	}
	return fmt.Sprintf("reset %d leases of processor %s to %s; running workers restart from there within a renew interval",
		r.Leases, r.Processor, r.To)
}
