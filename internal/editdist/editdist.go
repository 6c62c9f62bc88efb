// Package editdist measures how far apart two words are, for the "did you
// mean" of config errors: tracehop's YAML (proxy/config) and a driver's own
// keys (sdk.DecodeConfig) suggest keys the same way. It is not for
// anything on a request's path.
package editdist

// Distance is the Levenshtein distance between a and b: the fewest
// insertions, deletions and substitutions of bytes that make one the other.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
