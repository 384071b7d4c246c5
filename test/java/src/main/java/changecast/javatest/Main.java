package changecast.javatest;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.microsoft.signalr.TransportEnum;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Runs official-Java-client users against a running changecast, driven by
 * test/client/java_test.go over stdin and stdout, one command a line:
 *
 * <pre>
 *   start I TRANSPORT TENANT TOKEN   connect user I (websockets | longpolling) → "started I" or "failed I why"
 *   drop I                           close its connection → "dropped I"
 *   resume I                         reconnect and catch up → "resumed I" or "failed I why"
 *   dump                             one JSON line: every user's replica and counters
 *   stop                             close everything and exit
 * </pre>
 *
 * Environment: CHANGECAST_NEGOTIATE_URL (the app negotiate base, e.g.
 * http://127.0.0.1:8080/api) and CHANGECAST_HUB.
 */
public final class Main {
    public static void main(String[] args) throws Exception {
        String base = env("CHANGECAST_NEGOTIATE_URL"), hub = env("CHANGECAST_HUB");
        List<Client> clients = new ArrayList<>();
        ExecutorService work = Executors.newCachedThreadPool();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.trim().split(" ");
            switch (f[0]) {
                case "start" -> {
                    int i = Integer.parseInt(f[1]);
                    TransportEnum tr = switch (f[2]) {
                        case "websockets" -> TransportEnum.WEBSOCKETS;
                        case "longpolling" -> TransportEnum.LONG_POLLING;
                        default -> throw new IllegalArgumentException("unknown transport " + f[2]);
                    };
                    Client c = new Client(i, base, hub, f[3], f[4], tr);
                    synchronized (clients) {
                        clients.add(c);
                    }
                    work.execute(() -> answer(i, "started", c::start));
                }
                case "drop" -> {
                    Client c = find(clients, Integer.parseInt(f[1]));
                    work.execute(() -> answer(c.index, "dropped", () -> c.drop()));
                }
                case "resume" -> {
                    Client c = find(clients, Integer.parseInt(f[1]));
                    work.execute(() -> answer(c.index, "resumed", c::resume));
                }
                case "dump" -> {
                    ArrayNode out = Client.JSON.createArrayNode();
                    List<Client> all;
                    synchronized (clients) {
                        all = new ArrayList<>(clients);
                    }
                    for (Client c : all) {
                        out.add(c.report());
                    }
                    say(Client.JSON.writeValueAsString(out));
                }
                case "stop" -> {
                    clients.forEach(Client::close);
                    System.exit(0);
                }
                default -> throw new IllegalArgumentException("unknown command " + line);
            }
        }
        clients.forEach(Client::close);
        System.exit(0);
    }

    interface Step {
        void run() throws Exception;
    }

    private static void answer(int i, String done, Step step) {
        try {
            step.run();
            say(done + " " + i);
        } catch (Exception e) {
            say("failed " + i + " " + e);
        }
    }

    private static Client find(List<Client> clients, int i) {
        synchronized (clients) {
            return clients.stream().filter(c -> c.index == i).findFirst().orElseThrow();
        }
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static String env(String k) {
        String v = System.getenv(k);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException(k + " is not set: run this through go test ./test/client -run TestJavaClient");
        }
        return v;
    }
}
