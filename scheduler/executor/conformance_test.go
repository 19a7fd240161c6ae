package executor_test

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/executor/executortest"
)

func TestNoopConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		return executortest.Case{Exec: executor.Noop{}, Quick: executor.Input{RunID: 1, NodeRoleID: 1}}
	})
}

func TestTestExecutorConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		effects := filepath.Join(t.TempDir(), "effects")
		slow := executor.Input{RunID: 2, NodeRoleID: 2, Attrs: map[string]any{"delay": "1h", "effect": "x"}}
		return executortest.Case{
			Exec:  &executor.Test{EffectsFile: effects},
			Quick: executor.Input{RunID: 1, NodeRoleID: 1, Attrs: map[string]any{"effect": "x"}},
			Slow:  &slow,
			Effects: func(t *testing.T, in executor.Input) int {
				f, err := os.Open(effects)
				if err != nil {
					return 0
				}
				defer f.Close()
				n := 0
				for sc := bufio.NewScanner(f); sc.Scan(); {
					n++
				}
				return n
			},
		}
	})
}
