package redistest

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Strict makes c refuse, as strict servers and cluster proxies do, any Lua script that touches a
// key it did not declare in KEYS: every script c runs is rewritten so that each redis.call and
// redis.pcall first asks the server which of its arguments are keys (COMMAND GETKEYS) and fails
// with "STRICT undeclared key" when one of them is not among the script's KEYS. A key built in
// the script (KEYS[1] .. ':x') or handed in ARGV is thus an error in every test that runs on a
// Topology's client, on every topology.
//
// It works by answering EVALSHA with NOSCRIPT without sending it, so that go-redis' Script.Run
// falls back to EVAL with the source, which is rewritten on its way out. Scripts run in pipelines
// are not checked (the gateway runs none there).
func Strict(c redis.UniversalClient) {
	c.AddHook(strictHook{})
}

// strictPrelude defines the checked calls; the script's own text follows it.
const strictPrelude = `local __declared = {}
for _, k in ipairs(KEYS) do __declared[k] = true end
local function __check(...)
  local keys = redis.pcall('COMMAND', 'GETKEYS', ...)
  if type(keys) ~= 'table' or keys.err then return end
  for _, k in ipairs(keys) do
    if not __declared[k] then
      error({err = 'STRICT undeclared key ' .. k .. ' in ' .. tostring((...))})
    end
  end
end
local function __call(...) __check(...) return redis.call(...) end
local function __pcall(...) __check(...) return redis.pcall(...) end
`

// strictSource rewrites a script so that its Redis calls are checked (see Strict).
func strictSource(src string) string {
	src = strings.ReplaceAll(src, "redis.pcall(", "__pcall(")
	src = strings.ReplaceAll(src, "redis.call(", "__call(")
	return strictPrelude + src
}

type strictHook struct{}

// errNoScript makes go-redis send the script's source (see Strict).
type errNoScript struct{}

func (errNoScript) Error() string { return "NOSCRIPT strict mode sends every script's source" }
func (errNoScript) RedisError()   {}

func (strictHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (strictHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		switch strings.ToLower(cmd.Name()) {
		case "evalsha", "evalsha_ro":
			cmd.SetErr(errNoScript{})
			return cmd.Err()
		case "eval", "eval_ro":
			if len(args) > 1 {
				if src, ok := args[1].(string); ok {
					args[1] = strictSource(src)
				}
			}
		}
		return next(ctx, cmd)
	}
}

func (strictHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
