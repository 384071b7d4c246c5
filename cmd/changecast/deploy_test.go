package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/changecast/changecast/internal/testkit"
)

// The deployment examples in deploy/ stay consistent with the config
// schema: the worker's config passes `changecast config validate`, the
// hub's `changecast hub -check`, with the example Secret's values for
// their ${VAR}s (every one of which the Secret provides); the manifests
// run two workers and three hubs with probes, from the ConfigMap the
// kustomization builds of those files; Compose mounts the same files.
func TestDeployExamples(t *testing.T) {
	root := filepath.Join(testkit.Root(t), "deploy")
	k8s := filepath.Join(root, "kubernetes")

	docs := map[string][]map[string]any{}
	for _, f := range []string{"secret.example.yaml", "redis.yaml", "hub.yaml", "worker.yaml", "kustomization.yaml", "../compose/compose.yaml"} {
		docs[f] = readYAML(t, filepath.Join(k8s, f))
	}
	secret := docs["secret.example.yaml"][0]
	if dig(secret, "kind") != "Secret" {
		t.Fatalf("secret.example.yaml holds %v", dig(secret, "kind"))
	}
	env := map[string]string{}
	for k, v := range secret["stringData"].(map[string]any) {
		env[k] = v.(string)
	}

	varRe := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	files := dig(docs["kustomization.yaml"][0], "configMapGenerator", 0, "files").([]any)
	if len(files) != 2 {
		t.Fatalf("configMapGenerator files %v", files)
	}
	for _, f := range files {
		path := filepath.Join(k8s, f.(string))
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var code strings.Builder // the file without its comments
		for _, line := range strings.Split(string(raw), "\n") {
			if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ') {
				line = line[:i]
			}
			code.WriteString(line + "\n")
		}
		for _, m := range varRe.FindAllStringSubmatch(code.String(), -1) {
			if _, ok := env[m[1]]; !ok {
				t.Errorf("%s uses ${%s}, which the Secret does not hold", f, m[1])
			}
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	check := func(args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 {
			t.Errorf("changecast %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
	check("config", "validate", "-c", filepath.Join(k8s, "config", "worker.yaml"))
	check("hub", "-hub-config", filepath.Join(k8s, "config", "hub.yaml"), "-check")

	deployments := map[string]map[string]any{}
	for _, f := range []string{"redis.yaml", "hub.yaml", "worker.yaml"} {
		for _, d := range docs[f] {
			if dig(d, "kind") == "Deployment" {
				deployments[dig(d, "metadata", "name").(string)] = d
			}
		}
	}
	for name, want := range map[string]int{"changecast-worker": 2, "changecast-hub": 3, "changecast-redis": 1} {
		d := deployments[name]
		if d == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		if got := dig(d, "spec", "replicas"); got != want {
			t.Errorf("%s: replicas %v, want %d", name, got, want)
		}
		c := dig(d, "spec", "template", "spec", "containers", 0).(map[string]any)
		if c["readinessProbe"] == nil || c["livenessProbe"] == nil {
			t.Errorf("%s: probes missing", name)
		}
		if name != "changecast-redis" && dig(c, "envFrom", 0, "secretRef", "name") != dig(secret, "metadata", "name") {
			t.Errorf("%s: does not take its connection strings from the Secret", name)
		}
	}
	compose := docs["../compose/compose.yaml"][0]
	for svc, replicas := range map[string]int{"hub": 3, "worker": 2} {
		if dig(compose, "services", svc, "deploy", "replicas") != replicas {
			t.Errorf("compose %s: replicas %v", svc, dig(compose, "services", svc, "deploy", "replicas"))
		}
		if v := dig(compose, "services", svc, "volumes", 0); v != "../kubernetes/config:/etc/changecast:ro" {
			t.Errorf("compose %s mounts %v, not the Kubernetes example's config", svc, v)
		}
	}
}

func readYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
}

// dig walks maps (string keys) and lists (int keys); nil when missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
