// Package kubernetes validates packaging/kubernetes against the Kubernetes
// API's own Go types: each YAML document is decoded strictly into its typed
// object (unknown or duplicate fields are errors), then checked against the
// image (Dockerfile) and the rules the manifests promise. It is its own Go
// module so that k8s.io/api stays out of the server's dependencies.
package kubernetes

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const manifest = "../../packaging/kubernetes/durable-streams.yaml"

type objects struct {
	configMaps   []corev1.ConfigMap
	services     []corev1.Service
	statefulSets []appsv1.StatefulSet
}

// decode strictly decodes every document of a multi-document YAML file.
func decode(t *testing.T, data []byte) objects {
	t.Helper()
	var objs objects
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		var meta struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if meta.Kind == "" {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) != "" {
				t.Fatalf("document %d has no kind", i)
			}
			continue
		}
		strict := func(gv string, into any) {
			t.Helper()
			if meta.APIVersion != gv {
				t.Fatalf("document %d: %s has apiVersion %q, want %q", i, meta.Kind, meta.APIVersion, gv)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("document %d (%s): %v", i, meta.Kind, err)
			}
		}
		switch meta.Kind {
		case "ConfigMap":
			var o corev1.ConfigMap
			strict("v1", &o)
			objs.configMaps = append(objs.configMaps, o)
		case "Service":
			var o corev1.Service
			strict("v1", &o)
			objs.services = append(objs.services, o)
		case "StatefulSet":
			var o appsv1.StatefulSet
			strict("apps/v1", &o)
			objs.statefulSets = append(objs.statefulSets, o)
		default:
			t.Fatalf("document %d: unexpected kind %s", i, meta.Kind)
		}
	}
	return objs
}

// imageUser is the numeric USER uid:gid of the Dockerfile's final stage.
func imageUser(t *testing.T) (int64, int64) {
	t.Helper()
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+):(\d+)\s*$`).FindAllSubmatch(df, -1)
	if len(m) == 0 {
		t.Fatal("Dockerfile has no numeric USER uid:gid")
	}
	last := m[len(m)-1]
	uid, _ := strconv.ParseInt(string(last[1]), 10, 64)
	gid, _ := strconv.ParseInt(string(last[2]), 10, 64)
	return uid, gid
}

func TestManifestsDecodeStrictly(t *testing.T) {
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, data)
	if len(objs.statefulSets) != 1 || len(objs.configMaps) != 1 || len(objs.services) != 2 {
		t.Fatalf("want 1 StatefulSet, 1 ConfigMap, 2 Services; got %d, %d, %d",
			len(objs.statefulSets), len(objs.configMaps), len(objs.services))
	}
	checkStatefulSet(t, objs)
}

func checkStatefulSet(t *testing.T, objs objects) {
	ss := objs.statefulSets[0]
	cm := objs.configMaps[0]
	spec := ss.Spec
	if spec.Replicas == nil || *spec.Replicas != 1 {
		t.Errorf("replicas must be exactly 1 (one process per data_dir)")
	}
	pod := spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	// The pod runs as the image's user and the volume is writable by it.
	uid, gid := imageUser(t)
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid ||
		sc.FSGroup == nil || *sc.FSGroup != gid {
		t.Errorf("pod securityContext %+v: want runAsUser %d, runAsGroup %d, fsGroup %d (the Dockerfile's USER)", sc, uid, gid, gid)
	}

	// Probes: startup, readiness and liveness all GET /health on the server's port.
	port := map[string]int32{}
	for _, p := range c.Ports {
		port[p.Name] = p.ContainerPort
	}
	for name, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", name)
			continue
		}
		if p.HTTPGet.Path != "/health" || resolve(p.HTTPGet.Port, port) != 4437 {
			t.Errorf("%s: GET %s on port %v, want /health on 4437", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}

	// Requests and limits for CPU and memory.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("resources %s: request %s, limit %s; want both, request <= limit", r, req.String(), lim.String())
		}
	}

	// /data is the claim template's volume; the Caddyfile comes from the ConfigMap.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if len(spec.VolumeClaimTemplates) != 1 || mounts["/data"].Name != spec.VolumeClaimTemplates[0].Name {
		t.Errorf("/data must be mounted from the volumeClaimTemplate")
	}
	cfgMount, ok := mounts["/etc/durable-streams"]
	if !ok {
		t.Fatal("the config is not mounted at /etc/durable-streams")
	}
	var cfgVolume *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == cfgMount.Name {
			cfgVolume = &pod.Volumes[i]
		}
	}
	if cfgVolume == nil || cfgVolume.ConfigMap == nil || cfgVolume.ConfigMap.Name != cm.Name {
		t.Errorf("/etc/durable-streams must be the ConfigMap %s", cm.Name)
	}
	if strings.Join(c.Args, " ") != "run --config /etc/durable-streams/Caddyfile" {
		t.Errorf("args %q: want run --config /etc/durable-streams/Caddyfile", c.Args)
	}
	docker, err := os.ReadFile("../../packaging/docker/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["Caddyfile"] != string(docker) {
		t.Errorf("the ConfigMap's Caddyfile differs from packaging/docker/Caddyfile")
	}

	// Services select the pods; the headless one is the StatefulSet's serviceName.
	headless := false
	for _, s := range objs.services {
		for k, v := range s.Spec.Selector {
			if spec.Template.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the pods do not have", s.Name, k, v)
			}
		}
		if len(s.Spec.Ports) != 1 || resolve(s.Spec.Ports[0].TargetPort, port) != 4437 {
			t.Errorf("Service %s: want one port targeting 4437", s.Name)
		}
		if s.Name == spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = true
		}
	}
	if !headless {
		t.Errorf("no headless Service named %q (serviceName)", spec.ServiceName)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Labels[k] != v {
			t.Errorf("the selector %s=%s does not match the pod template", k, v)
		}
	}
}

// resolve turns a named or numeric port into a number.
func resolve(p intstr.IntOrString, named map[string]int32) int32 {
	if p.Type == intstr.String {
		return named[p.StrVal]
	}
	return p.IntVal
}

// The strict decoder is what catches mistakes: an unknown field is refused.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "      terminationGracePeriodSeconds:", "      terminationGracePeriod:", 1)
	if bad == string(data) {
		t.Fatal("the manifest no longer has terminationGracePeriodSeconds; update this test")
	}
	var ss appsv1.StatefulSet
	docs := regexp.MustCompile(`(?m)^---\s*$`).Split(bad, -1)
	if err := yaml.UnmarshalStrict([]byte(docs[len(docs)-1]), &ss); err == nil ||
		!strings.Contains(err.Error(), "terminationGracePeriod") {
		t.Fatalf("a misspelt field was accepted (err %v)", err)
	}
}
