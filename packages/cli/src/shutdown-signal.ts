// How the long-running commands (coordinator start, worker start, up) learn they should stop.
//
// A terminal's Ctrl-C sends SIGINT to the whole foreground process group: `up` and every worker it spawned get
// it at once, and `up` then sends each worker SIGTERM as well. So a process that is stopping meets a second
// signal as a matter of course. The handlers therefore stay installed for the rest of the process: had they
// been removed on the first signal, the second would meet Node's default handler and end the worker in the
// middle of its stop, leaving its model replicas' namespaces, interfaces, temp dirs and launchers behind.

const shutdownSignals = ['SIGINT', 'SIGTERM'] as const

/**
 * Resolves on the first SIGINT or SIGTERM. Later ones are reported on stderr and otherwise ignored: the stop
 * already under way finishes (SIGKILL still ends the process at once). Installed once per process; later calls
 * share the first one's answer, so call it as early as possible: a signal before it meets Node's default.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  shutdown ??= new Promise((resolve) => {
    let received: NodeJS.Signals | undefined
    const handle = (signal: NodeJS.Signals) => {
      if (received === undefined) {
        received = signal
        resolve(signal)
      } else reportRepeat(signal)
    }
    // Node's signal handles do not keep the event loop alive: the process still ends once its work is done.
    for (const signal of shutdownSignals) process.on(signal, handle)
  })
  return shutdown
}

let shutdown: Promise<NodeJS.Signals> | undefined

function reportRepeat(signal: NodeJS.Signals): void {
  process.stderr.write(`gpumesh: ${signal} while stopping; still stopping cleanly (SIGKILL ends at once)\n`)
}
