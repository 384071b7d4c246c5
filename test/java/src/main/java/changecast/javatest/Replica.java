package changecast.javatest;

import com.fasterxml.jackson.databind.JsonNode;
import com.flipkart.zjsonpatch.JsonPatch;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The documents of one client, each with its version, kept with the version
 * rules of the wire contract (docs/client.md, "What a client receives"). It
 * decides only: a change that cannot be applied (a refetch marker, a patch
 * whose base the replica does not hold) is returned as a gap for the caller
 * to read again.
 */
final class Replica {
    /** A document at version v; doc is null for a deleted one (a tombstone). */
    record Entry(JsonNode doc, String v) {}

    /** A document to read again, wanted at version v or newer. */
    record Gap(String collection, String id, String v) {}

    private final Map<String, Map<String, Entry>> cols = new TreeMap<>();
    final Map<String, Long> stats = new TreeMap<>();

    Replica() {
        for (String k : List.of("changes", "patches", "upserts", "deletes", "truncates", "ignored", "gaps", "loaded")) {
            stats.put(k, 0L);
        }
    }

    private void count(String k) {
        stats.merge(k, 1L, Long::sum);
    }

    /**
     * compare compares two versions ("23456789.1") segment by segment as big
     * integers; when one is a prefix of the other, the shorter is smaller.
     */
    static int compare(String a, String b) {
        String[] as = a.split("\\."), bs = b.split("\\.");
        for (int i = 0; i < Math.min(as.length, bs.length); i++) {
            int c = new BigInteger(as[i]).compareTo(new BigInteger(bs[i]));
            if (c != 0) {
                return c;
            }
        }
        return Integer.compare(as.length, bs.length);
    }

    Entry get(String collection, String id) {
        Map<String, Entry> m = cols.get(collection);
        return m == null ? null : m.get(id);
    }

    void put(String collection, String id, JsonNode doc, String v) {
        cols.computeIfAbsent(collection, k -> new HashMap<>()).put(id, new Entry(doc, v));
    }

    void clear() {
        cols.clear();
    }

    /** load takes one snapshot entry: the document (or its delete) at v. */
    void load(JsonNode d) {
        String c = d.get("collection").asText(), id = d.get("id").asText(), v = d.get("v").asText();
        Entry e = get(c, id);
        if (e != null && compare(e.v(), v) > 0) {
            return; // a live change newer than the page already applied
        }
        put(c, id, d.path("deleted").asBoolean(false) ? null : d.get("doc"), v);
        count("loaded");
    }

    /** apply applies an envelope's changes in order and returns the gaps. */
    List<Gap> apply(JsonNode envelope) {
        List<Gap> gaps = new ArrayList<>();
        for (JsonNode ch : envelope.path("changes")) {
            Gap g = applyChange(ch);
            if (g != null) {
                count("gaps");
                gaps.add(g);
            }
        }
        return gaps;
    }

    private Gap applyChange(JsonNode ch) {
        count("changes");
        String op = ch.get("op").asText(), c = ch.get("collection").asText(), v = ch.get("v").asText();
        if (op.equals("truncate")) {
            count("truncates");
            Map<String, Entry> m = cols.get(c);
            if (m != null) {
                m.replaceAll((id, e) -> compare(e.v(), v) < 0 ? new Entry(null, v) : e);
            }
            return null;
        }
        String id = ch.get("id").asText();
        Entry e = get(c, id);
        switch (op) {
            case "upsert" -> {
                // A delete at the same version (a routing move seen from both
                // groups) does not hide the document.
                if (e != null && (e.doc() != null ? compare(e.v(), v) >= 0 : compare(e.v(), v) > 0)) {
                    count("ignored");
                    return null;
                }
                put(c, id, ch.get("doc"), v);
                count("upserts");
            }
            case "delete" -> {
                if (e != null && compare(e.v(), v) >= 0) {
                    count("ignored");
                    return null;
                }
                put(c, id, null, v);
                count("deletes");
            }
            case "patch" -> {
                if (e != null && compare(e.v(), v) >= 0) {
                    count("ignored");
                    return null;
                }
                if (e == null || e.doc() == null || compare(ch.get("pv").asText(), e.v()) > 0) {
                    return new Gap(c, id, v);
                }
                JsonNode doc;
                try {
                    doc = JsonPatch.apply(ch.get("patch"), e.doc());
                } catch (RuntimeException err) {
                    return new Gap(c, id, v);
                }
                put(c, id, doc, v);
                count("patches");
            }
            case "refetch" -> {
                if (e != null && compare(e.v(), v) >= 0) {
                    count("ignored");
                    return null;
                }
                return new Gap(c, id, v);
            }
            default -> throw new IllegalArgumentException("unknown op " + op);
        }
        return null;
    }

    /** docs are the live documents, keyed "collection/id". */
    Map<String, Entry> docs() {
        Map<String, Entry> out = new TreeMap<>();
        cols.forEach((c, m) -> m.forEach((id, e) -> {
            if (e.doc() != null) {
                out.put(c + "/" + id, e);
            }
        }));
        return out;
    }
}
