#!/usr/bin/env bash
# make-voices.sh: generate the speech `callbridge demo` plays, synthesized with espeak-ng.
#
# Output (next to this script), raw headerless μ-law, 8 kHz, mono, 8 bytes per ms: the format Twilio Media Streams
# carries and the Realtime API's `audio/pcmu`, so the demo forwards it byte for byte like real audio:
#   assistant-greeting.ulaw  the assistant's greeting            (the local stand-in for OpenAI speaks it)
#   caller-booking.ulaw      the caller's request                (the simulated caller plays it)
#   assistant-offer.ulaw     the assistant's long answer         (cut short by the caller's barge-in)
#   caller-barge-in.ulaw     the caller talking over the answer
#   assistant-goodbye.ulaw   the assistant's farewell before it calls end_call
# and, for each, a .txt holding the spoken text (the stand-in's transcripts are these texts).
#
# The files are committed and compiled into the binary (`include_bytes!` in src/demo/script.rs); builds never run
# this script. Re-run it only to change the demo's speech:
#   apt-get install -y espeak-ng sox
#   src/demo/voice/make-voices.sh
# It is deterministic for a given espeak-ng/sox version (no dither, fixed voices and rates).
#
# Pipeline per phrase: espeak-ng speaks to a WAV → sox trims leading and trailing silence (keeping 100 ms after
# the last word), resamples to 8 kHz mono, normalises to -3 dBFS and encodes μ-law. Each file is checked: real
# speech (RMS above a floor), duration within bounds, and at most 48 KB.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install -y espeak-ng sox)" >&2; exit 1; }
done

raw_ulaw=(-t raw -e mu-law -b 8 -r 8000 -c 1)
min_rms=0.02
max_bytes=49152

# make NAME VOICE RATE_WPM MIN_S MAX_S TEXT: write NAME.ulaw and NAME.txt, then check them.
make() {
    local name="$1" voice="$2" rate_wpm="$3" min_s="$4" max_s="$5" text="$6"
    local wav="$work/$name.wav" out="$here/$name.ulaw"

    espeak-ng -v "$voice" -s "$rate_wpm" -w "$wav" "$text"
    sox -D "$wav" "${raw_ulaw[@]}" "$out" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% pad 0.1 reverse gain -n -3
    printf '%s\n' "$text" >"$here/$name.txt"

    local bytes duration_s rms
    bytes=$(stat -c %s "$out")
    duration_s=$(sox "${raw_ulaw[@]}" "$out" -n stat 2>&1 | awk '/^Length \(seconds\)/ {print $3}')
    rms=$(sox "${raw_ulaw[@]}" "$out" -n stat 2>&1 | awk '/^RMS +amplitude/ {print $3}')
    printf '%-24s %6d bytes  %6.3f s  RMS %.4f  "%s"\n' "$name.ulaw" "$bytes" "$duration_s" "$rms" "$text"

    awk -v r="$rms" -v m="$min_rms" 'BEGIN { exit !(r >= m) }' \
        || { echo "error: $name.ulaw is near-silent (RMS $rms < $min_rms)" >&2; exit 1; }
    awk -v d="$duration_s" -v lo="$min_s" -v hi="$max_s" 'BEGIN { exit !(d >= lo && d <= hi) }' \
        || { echo "error: $name.ulaw lasts $duration_s s, expected $min_s..$max_s s" >&2; exit 1; }
    ((bytes <= max_bytes)) \
        || { echo "error: $name.ulaw is $bytes bytes, over $max_bytes" >&2; exit 1; }
}

# The assistant: a British voice; the caller: an American one, so the two are easy to tell apart.
make assistant-greeting en-gb+f3 200 1.0 3.0 "Riverside Bistro, good evening. How can I help?"
make caller-booking     en-us    200 2.0 4.5 "Hi, I'd like to book a table for four at seven tonight, please."
make assistant-offer    en-gb+f3 200 3.5 6.0 "Certainly, four at seven. We have a table by the window, or one on the terrace. Which would you like?"
make caller-barge-in    en-us    200 0.5 1.6 "The terrace, please."
make assistant-goodbye  en-gb+f3 200 1.5 4.0 "The terrace it is, four at seven tonight. Goodbye!"
