package changecast.javatest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.gson.JsonElement;
import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionBuilder;
import com.microsoft.signalr.HttpHubConnectionBuilder;
import com.microsoft.signalr.TransportEnum;
import io.reactivex.rxjava3.core.Single;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * One app user on the official Java client: connects through changecast's
 * app negotiate with its JWT, loads the snapshot, follows each stream's
 * offsets, and after a reconnect catches up from /changes (docs/client.md,
 * "Streams, offsets and catching up"). Everything but the connection's own
 * threads runs on one thread (loop), so envelopes that arrive while the
 * snapshot loads wait in its queue: that is the "hold" of the contract.
 */
final class Client {
    static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** A stream's position: its epoch, the last offset applied, envelopes that came early. */
    private static final class Stream {
        String epoch;
        long offset;
        final TreeMap<Long, JsonNode> early = new TreeMap<>();
        boolean fillScheduled;

        Stream(String epoch, long offset) {
            this.epoch = epoch;
            this.offset = offset;
        }
    }

    final int index;
    final String tenant;
    private final String base, hub, token;
    private final TransportEnum transport;
    private HubConnection conn;
    private String hubURL;
    private volatile String hubToken;
    private final ScheduledExecutorService loop = Executors.newSingleThreadScheduledExecutor();
    private final Replica replica = new Replica();
    private final Map<String, Stream> streams = new HashMap<>();
    private final Map<String, Replica.Gap> pending = new HashMap<>();
    private boolean settleScheduled;
    private List<JsonNode> held; // live envelopes while the snapshot loads or a reconnect catches up
    final Map<String, Long> stats = new TreeMap<>();
    final List<String> errors = new ArrayList<>();
    volatile String state = "new";

    Client(int index, String base, String hub, String tenant, String token, TransportEnum transport) {
        this.index = index;
        this.base = base;
        this.hub = hub;
        this.tenant = tenant;
        this.token = token;
        for (String k : List.of("envelopes", "snapshots", "snapshotDocs", "reloads", "catchUps", "resyncs",
                "gapsFilled", "duplicates", "refetches", "caughtUp")) {
            stats.put(k, 0L);
        }
        this.transport = transport;
    }

    /**
     * connect builds the connection. On WebSockets the client follows the
     * app negotiate's redirect itself: it posts to {base}/negotiate?hub=
     * with the app token and connects to the {url, accessToken} it gets.
     * On Long Polling it cannot: after a redirect, the Java client (9.0.3)
     * sends every poll with the token of withAccessTokenProvider (the app's
     * token) instead of the one the redirect gave, and the hub (like Azure
     * SignalR Service) answers 401. So a Long Polling app calls the app
     * negotiate itself, as Azure Functions apps do, and gives the client
     * the hub URL and the hub token it got (again on every start).
     */
    private HubConnection connect() throws Exception {
        if (conn != null) {
            if (transport == TransportEnum.LONG_POLLING) {
                negotiate();
            }
            return conn;
        }
        HttpHubConnectionBuilder b;
        if (transport == TransportEnum.LONG_POLLING) {
            negotiate();
            b = HubConnectionBuilder.create(hubURL).withAccessTokenProvider(Single.defer(() -> Single.just(hubToken)));
        } else {
            b = HubConnectionBuilder.create(base + "?hub=" + enc(hub)).withAccessTokenProvider(Single.just(token));
        }
        conn = b.withTransport(transport).build();
        conn.on("changes", (JsonElement env) -> {
            JsonNode node;
            try {
                node = JSON.readTree(env.toString());
            } catch (IOException e) {
                loop.execute(() -> error("envelope: " + e));
                return;
            }
            loop.execute(() -> onEnvelope(node));
        }, JsonElement.class);
        conn.onClosed(err -> loop.execute(() -> {
            if (err != null && !state.equals("dropped")) {
                error("closed: " + err);
            }
        }));
        return conn;
    }

    /** negotiate asks the app negotiate for the hub's URL and a token for it. */
    private void negotiate() throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create(base + "/negotiate?hub=" + enc(hub)))
                .header("Authorization", "Bearer " + token)
                .POST(HttpRequest.BodyPublishers.noBody())
                .timeout(Duration.ofSeconds(30))
                .build();
        HttpResponse<byte[]> resp = HTTP.send(req, HttpResponse.BodyHandlers.ofByteArray());
        if (resp.statusCode() != 200) {
            throw new IOException("negotiate: " + resp.statusCode() + " " + new String(resp.body(), StandardCharsets.UTF_8));
        }
        JsonNode n = JSON.readTree(resp.body());
        hubURL = n.get("url").asText();
        hubToken = n.get("accessToken").asText();
    }

    private void count(String k) {
        stats.merge(k, 1L, Long::sum);
    }

    private void error(String msg) {
        if (errors.size() < 5) {
            errors.add(msg);
        }
    }

    static String enc(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }

    /** A step run on the loop thread once connected, while live envelopes are held. */
    private interface Step {
        void run() throws Exception;
    }

    /**
     * connectThen connects (holding live envelopes from the first one),
     * runs step on the loop, then applies what it held; it returns once live.
     */
    private void connectThen(String during, Step step) throws Exception {
        loop.submit(() -> held = new ArrayList<>()).get();
        connect().start().blockingAwait(30, TimeUnit.SECONDS);
        loop.submit(() -> {
            state = during;
            step.run();
            List<JsonNode> h = held;
            held = null;
            h.forEach(this::onEnvelope);
            state = "live";
            return null;
        }).get(120, TimeUnit.SECONDS);
    }

    /** start connects, then loads the snapshot and catches up. */
    void start() throws Exception {
        state = "connecting";
        connectThen("loading", this::load);
    }

    /** drop closes the connection; the replica stays. */
    void drop() {
        state = "dropped";
        conn.stop().blockingAwait(30, TimeUnit.SECONDS);
    }

    /**
     * resume reconnects and catches every stream up from its history: what
     * was sent meanwhile comes from /changes, nothing is loaded again unless
     * a history is gone (410 or a new epoch).
     */
    void resume() throws Exception {
        state = "reconnecting";
        connectThen("catching up", () -> {
            boolean ok = true;
            for (Map.Entry<String, Stream> s : streams.entrySet()) {
                long before = s.getValue().offset;
                ok &= catchUp(s.getKey(), s.getValue());
                stats.merge("caughtUp", s.getValue().offset - before, Long::sum); // envelopes read from /changes
            }
            if (ok) {
                count("catchUps");
            } else {
                count("resyncs");
                reload();
            }
        });
    }

    void close() {
        try {
            if (conn != null) {
                conn.stop().blockingAwait(10, TimeUnit.SECONDS);
            }
        } catch (RuntimeException ignored) {
            // stopping a connection that already failed
        }
        loop.shutdownNow();
    }

    /** report is what the Go test compares: documents, versions and counters. */
    ObjectNode report() throws Exception {
        return loop.submit(() -> {
            ObjectNode r = JSON.createObjectNode();
            r.put("i", index);
            r.put("tenant", tenant);
            r.put("state", state);
            ObjectNode docs = r.putObject("docs");
            replica.docs().forEach((k, e) -> {
                ObjectNode d = docs.putObject(k);
                d.set("doc", e.doc());
                d.put("v", e.v());
            });
            ObjectNode rs = r.putObject("stats");
            replica.stats.forEach(rs::put);
            rs.put("refetches", stats.get("refetches"));
            rs.put("pending", pending.size());
            ObjectNode cs = r.putObject("client");
            stats.forEach(cs::put);
            errors.forEach(r.putArray("errors")::add);
            return r;
        }).get(60, TimeUnit.SECONDS);
    }

    // --- on the loop thread from here on ---

    private static String streamKey(JsonNode n) {
        if (n.hasNonNull("group")) {
            return "g:" + n.get("group").asText();
        }
        if (n.hasNonNull("user")) {
            return "u:" + n.get("user").asText();
        }
        return "h:";
    }

    /** load reads every snapshot page, then each stream's envelopes after its position. */
    private void load() throws Exception {
        String cursor = null;
        boolean first = true;
        do {
            String q = "hub=" + enc(hub) + (cursor == null ? "" : "&cursor=" + enc(cursor));
            JsonNode page = getJSON("/snapshot?" + q, false);
            if (first) {
                streams.clear();
                for (JsonNode s : page.path("streams")) {
                    streams.put(streamKey(s), new Stream(s.get("epoch").asText(), s.get("offset").asLong()));
                }
                first = false;
            }
            for (JsonNode d : page.path("docs")) {
                replica.load(d);
                count("snapshotDocs");
            }
            cursor = page.hasNonNull("next") ? page.get("next").asText() : null;
        } while (cursor != null);
        count("snapshots");
        for (Map.Entry<String, Stream> s : streams.entrySet()) {
            if (!catchUp(s.getKey(), s.getValue())) {
                throw new IOException("history of " + s.getKey() + " gone right after the snapshot");
            }
        }
    }

    /** reload starts over from a snapshot: a stream's history is gone. */
    private void reload() throws Exception {
        count("reloads");
        replica.clear();
        pending.clear();
        load();
    }

    /**
     * catchUp applies the stream's envelopes after its offset from
     * /changes; false when the history no longer reaches back (410).
     */
    private boolean catchUp(String key, Stream s) throws Exception {
        while (true) {
            String q = "hub=" + enc(hub) + "&epoch=" + enc(s.epoch) + "&after=" + s.offset;
            if (key.startsWith("g:")) {
                q += "&group=" + enc(key.substring(2));
            } else if (key.startsWith("u:")) {
                q += "&user=me";
            }
            JsonNode page = getJSON("/changes?" + q, true);
            if (page == null) {
                return false;
            }
            for (JsonNode env : page.path("envelopes")) {
                long off = env.get("offset").asLong();
                if (off == s.offset + 1) {
                    applyEnvelope(env);
                    s.offset = off;
                }
            }
            drainEarly(s);
            if (!page.path("more").asBoolean(false)) {
                return true;
            }
        }
    }

    private void onEnvelope(JsonNode env) {
        if (held != null) {
            held.add(env);
            return;
        }
        try {
            count("envelopes");
            String key = streamKey(env);
            Stream s = streams.get(key);
            if (s == null) {
                error("an envelope of a stream the snapshot did not list: " + key);
                return;
            }
            if (!env.path("epoch").asText().equals(s.epoch)) {
                count("resyncs");
                reload();
                return;
            }
            long off = env.get("offset").asLong();
            if (off <= s.offset) {
                count("duplicates");
                return;
            }
            if (off > s.offset + 1) {
                // Envelopes can come out of order (several writers): wait a
                // moment for the missing ones, then read them.
                s.early.put(off, env);
                if (!s.fillScheduled) {
                    s.fillScheduled = true;
                    loop.schedule(() -> fill(key), 200, TimeUnit.MILLISECONDS);
                }
                return;
            }
            applyEnvelope(env);
            s.offset = off;
            drainEarly(s);
        } catch (Exception e) {
            error("envelope: " + e);
        }
    }

    private void fill(String key) {
        Stream s = streams.get(key);
        if (s == null) {
            return;
        }
        s.fillScheduled = false;
        if (s.early.isEmpty()) {
            return;
        }
        try {
            count("gapsFilled");
            if (!catchUp(key, s)) {
                count("resyncs");
                reload();
            }
        } catch (Exception e) {
            error("filling a gap: " + e);
        }
    }

    private void drainEarly(Stream s) {
        while (!s.early.isEmpty() && s.early.firstKey() <= s.offset + 1) {
            Map.Entry<Long, JsonNode> e = s.early.pollFirstEntry();
            if (e.getKey() == s.offset + 1) {
                applyEnvelope(e.getValue());
                s.offset = e.getKey();
            }
        }
    }

    private void applyEnvelope(JsonNode env) {
        for (Replica.Gap g : replica.apply(env)) {
            String k = g.collection() + "\u0000" + g.id();
            Replica.Gap old = pending.get(k);
            if (old == null || Replica.compare(old.v(), g.v()) < 0) {
                pending.put(k, g);
            }
        }
        if (!pending.isEmpty() && !settleScheduled) {
            // A later change often settles a gap (an old patch of a document
            // whose delete follows): wait for it before reading again.
            settleScheduled = true;
            loop.schedule(this::settle, 250, TimeUnit.MILLISECONDS);
        }
    }

    /** settle reads again, with the one-document snapshot, each gap no later change settled. */
    private void settle() {
        settleScheduled = false;
        for (Replica.Gap g : new ArrayList<>(pending.values())) {
            pending.remove(g.collection() + "\u0000" + g.id());
            Replica.Entry e = replica.get(g.collection(), g.id());
            if (e != null && Replica.compare(e.v(), g.v()) >= 0) {
                continue;
            }
            count("refetches");
            try {
                JsonNode page = getJSON("/snapshot?hub=" + enc(hub) + "&collection=" + enc(g.collection())
                        + "&id=" + enc(g.id()), true);
                if (page == null || page.path("docs").isEmpty()) {
                    replica.put(g.collection(), g.id(), null, g.v());
                    continue;
                }
                JsonNode d = page.get("docs").get(0);
                String v = d.get("v").asText();
                replica.put(g.collection(), g.id(), d.path("deleted").asBoolean(false) ? null : d.get("doc"),
                        Replica.compare(v, g.v()) >= 0 ? v : g.v());
            } catch (Exception err) {
                error("refetch " + g + ": " + err);
            }
        }
    }

    /**
     * getJSON reads path under the negotiate base with the app token. A 503
     * (the snapshot is not served yet) is retried; 404 and 410 answer null
     * when gone is true.
     */
    private JsonNode getJSON(String path, boolean gone) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create(base + path))
                .header("Authorization", "Bearer " + token)
                .timeout(Duration.ofSeconds(30))
                .build();
        for (int attempt = 0; ; attempt++) {
            HttpResponse<byte[]> resp = HTTP.send(req, HttpResponse.BodyHandlers.ofByteArray());
            int status = resp.statusCode();
            if (status == 200) {
                return JSON.readTree(resp.body());
            }
            if (gone && (status == 404 || status == 410)) {
                return null;
            }
            if (status != 503 || attempt >= 20) {
                throw new IOException("GET " + path + ": " + status + " " + new String(resp.body(), StandardCharsets.UTF_8));
            }
            Thread.sleep(Math.min(2000, 100L << Math.min(attempt, 5)));
        }
    }
}
