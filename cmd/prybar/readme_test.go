package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/apitest"
)

// readmeDoc is one GraphQL document from a ```graphql block of README.md.
type readmeDoc struct {
	line  int      // README line it starts on
	text  string   // the document
	codes []string // domain error codes a following "# →" comment says it answers with
	maybe bool     // the comment says "may answer": the codes are allowed, not required
}

var (
	varDecl   = regexp.MustCompile(`\$(\w+)\s*:`)
	lookupRow = regexp.MustCompile("^\\| `\\$(\\w+)` \\| `([^`]+)`")
	codeWord  = regexp.MustCompile(`code: ([A-Z_]+)`)
)

// readmeExamples splits every ```graphql block of the README into documents (a document ends
// where its braces balance; "# →" lines state the answer of the document before them) and reads
// the variable lookup table.
func readmeExamples(t *testing.T, readme string) (docs []readmeDoc, lookups map[string]string) {
	lookups = map[string]string{}
	in := false
	var cur strings.Builder
	depth, start := 0, 0
	for i, line := range strings.Split(readme, "\n") {
		n := i + 1
		if m := lookupRow.FindStringSubmatch(line); m != nil && !in {
			lookups[m[1]] = m[2]
		}
		switch {
		case strings.HasPrefix(line, "```graphql"):
			in = true
			continue
		case in && strings.HasPrefix(line, "```"):
			if depth != 0 || strings.TrimSpace(cur.String()) != "" {
				t.Errorf("README.md:%d: unbalanced braces in the example starting at line %d", n, start)
			}
			in, depth = false, 0
			cur.Reset()
			continue
		case !in:
			continue
		}
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") && depth == 0 {
			if len(docs) > 0 {
				if strings.Contains(trimmed, "may answer") {
					docs[len(docs)-1].maybe = true
				}
				for _, m := range codeWord.FindAllStringSubmatch(trimmed, -1) {
					docs[len(docs)-1].codes = append(docs[len(docs)-1].codes, m[1])
				}
			}
			continue
		}
		if trimmed == "" {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cur.WriteString(line + "\n")
		inString := false
		for _, r := range line {
			switch {
			case r == '"':
				inString = !inString
			case inString:
			case r == '{':
				depth++
			case r == '}':
				depth--
			}
		}
		if depth < 0 {
			t.Errorf("README.md:%d: a closing brace without an opening one", n)
			depth = 0
		}
		if depth == 0 && strings.Contains(cur.String(), "{") {
			docs = append(docs, readmeDoc{line: start, text: cur.String()})
			cur.Reset()
		}
	}
	return docs, lookups
}

// firstID returns the first "id" value in a GraphQL answer.
func firstID(v any) string {
	switch x := v.(type) {
	case map[string]any:
		if id, ok := x["id"].(string); ok {
			return id
		}
		for _, k := range []string{"data", "edges", "node"} {
			if id := firstID(x[k]); id != "" {
				return id
			}
		}
		for _, e := range x {
			if id := firstID(e); id != "" {
				return id
			}
		}
	case []any:
		for _, e := range x {
			if id := firstID(e); id != "" {
				return id
			}
		}
	}
	return ""
}

// domainCodes collects the codes of every non-empty "errors" list in a payload.
func domainCodes(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "errors" {
				if list, ok := e.([]any); ok {
					for _, item := range list {
						code, _ := item.(map[string]any)["code"].(string)
						if code == "" {
							code = fmt.Sprint(item)
						}
						*out = append(*out, code)
					}
					continue
				}
			}
			domainCodes(e, out)
		}
	case []any:
		for _, e := range x {
			domainCodes(e, out)
		}
	}
}

// Every GraphQL example in README.md runs, as written, against `prybar serve --fixtures demo`
// (what `make run` starts): no GraphQL errors, and no domain errors except those the README
// announces after the example. Ids come from the README's own lookup table.
func TestReadmeExamples(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs, lookups := readmeExamples(t, string(data))
	if len(docs) < 12 {
		t.Fatalf("found %d GraphQL examples in README.md, expected at least 12: is the block syntax still ```graphql?", len(docs))
	}
	p := startServe(t, "--db", filepath.Join(t.TempDir(), "demo.db"), "--fixtures", "demo")
	// Signed in as the README's quick start shows: the demo admin, a session cookie and its CSRF
	// token (subscriptions use the test server's admin token, see startServe).
	c, err := apitest.Login(p.URL, "admin", DemoPassword)
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(doc readmeDoc) map[string]any {
		vars := map[string]any{}
		for _, m := range varDecl.FindAllStringSubmatch(doc.text, -1) {
			q, ok := lookups[m[1]]
			if !ok {
				t.Fatalf("README.md:%d: example uses $%s, which the variable table does not define", doc.line, m[1])
			}
			resp, err := c.Do(q, nil)
			if err != nil || len(resp.Errors) > 0 {
				t.Fatalf("README lookup of $%s %s: %v %+v", m[1], q, err, resp)
			}
			var v any
			_ = json.Unmarshal(resp.Data, &v)
			id := firstID(v)
			if id == "" {
				t.Fatalf("README.md:%d: lookup of $%s found nothing in the demo: %s → %s", doc.line, m[1], q, resp.Data)
			}
			vars[m[1]] = id
		}
		return vars
	}
	for _, doc := range docs {
		vars := resolve(doc)
		name := fmt.Sprintf("README.md:%d", doc.line)
		if strings.HasPrefix(strings.TrimSpace(doc.text), "subscription") {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			sub, err := apitest.Subscribe(ctx, p.URL, doc.text, vars)
			if err != nil {
				cancel()
				t.Errorf("%s: subscribe: %v\n%s", name, err, doc.text)
				continue
			}
			select {
			case msg, ok := <-sub.Next:
				if !ok {
					t.Errorf("%s: subscription ended: %v\n%s", name, sub.Err(), doc.text)
				} else {
					t.Logf("%s: first event %s", name, msg)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s: no event within 15 s\n%s", name, doc.text)
			}
			sub.Close()
			cancel()
			continue
		}
		resp, err := c.Do(doc.text, vars)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(resp.Errors) > 0 {
			t.Errorf("%s: GraphQL errors %+v\n%s", name, resp.Errors, doc.text)
			continue
		}
		var v any
		_ = json.Unmarshal(resp.Data, &v)
		var got []string
		domainCodes(v, &got)
		if doc.maybe && len(got) == 0 {
			continue
		}
		if strings.Join(got, ",") != strings.Join(doc.codes, ",") {
			t.Errorf("%s: domain errors %v, README says %v\n%s\n→ %s", name, got, doc.codes, doc.text, resp.Data)
		}
	}
	t.Logf("%d README examples ran against the demo", len(docs))
}
