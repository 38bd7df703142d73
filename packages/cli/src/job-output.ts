// How a job's output reaches the caller's stdout: colour codes only where a terminal shows them, and the
// tail of the output that Ray keeps in a failed job's message when no output was streamed.

// Matching escape sequences is the point here, so the control character ESC is in both patterns.
/** An escape sequence cut at the end of a chunk: held back until the next chunk completes it. */
// eslint-disable-next-line no-control-regex
const partialEscape = /\x1b(?:\[[0-?]*[ -/]*)?$/
/** CSI sequences (colours, cursor moves) and two-character escapes. */
// eslint-disable-next-line no-control-regex
const escapeSequence = /\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])/g

/**
 * Removes ANSI escape sequences from a stream of text chunks. A sequence split between two chunks is removed
 * whole: its start is held back until the rest arrives (`flush` gives back what is held at the end).
 */
export function createAnsiStripper(): { strip(text: string): string; flush(): string } {
  let held = ''
  return {
    strip(text) {
      const joined = held + text
      const cut = partialEscape.exec(joined)
      held = cut ? cut[0] : ''
      return (cut ? joined.slice(0, cut.index) : joined).replace(escapeSequence, '')
    },
    flush() {
      const rest = held
      held = ''
      return rest
    },
  }
}

/** How Ray ends a failed job's message: the header, then the tail of the driver's output. */
const rayLogsTail = /,? *last available logs \(truncated to [\d,]+ chars\):?\n?/

/**
 * A job's message split into what happened and the output tail Ray appends to it: "Job entrypoint command
 * failed with exit code 1" and the lines after "last available logs (...)".
 */
export function splitJobMessage(message: string): { summary: string; outputTail: string } {
  const match = rayLogsTail.exec(message)
  if (!match) {
    const newline = message.indexOf('\n')
    return newline < 0
      ? { summary: message, outputTail: '' }
      : { summary: message.slice(0, newline).replace(/:$/, ''), outputTail: message.slice(newline + 1) }
  }
  return {
    summary: message.slice(0, match.index),
    outputTail: message.slice(match.index + match[0].length),
  }
}
