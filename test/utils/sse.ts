/**
 * A Server-Sent Events client for tests: opens a feed with `fetch`, splits
 * it into frames (`id`, `data` parsed as JSON, comments skipped), and hands
 * them out one at a time. Every wait is bounded and fails with what was
 * received so far.
 */

export interface Frame {
  readonly id: string | undefined
  readonly data: any
}

export interface Feed {
  readonly status: number
  readonly headers: Headers
  /** The next frame; rejects after `timeoutMs` or when the feed ends first. */
  readonly next: (timeoutMs?: number) => Promise<Frame>
  /** Frames until one satisfies `test` (that one included). */
  readonly until: (test: (frame: Frame) => boolean, timeoutMs?: number) => Promise<ReadonlyArray<Frame>>
  /** Resolves when the server ends the response (or the connection closes). */
  readonly ended: Promise<void>
  readonly close: () => void
}

export const openFeed = async (url: string, headers: Record<string, string> = {}): Promise<Feed> => {
  const controller = new AbortController()
  const response = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal })
  const frames: Array<Frame> = []
  const seen: Array<string> = []
  let done = false
  let wake: (() => void) | undefined
  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const ended = (async () => {
    if (response.body === null) return
    const reader = response.body.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    try {
      while (true) {
        const { done: finished, value } = await reader.read()
        if (finished) break
        buffer += decoder.decode(value, { stream: true })
        let end: number
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let id: string | undefined
          const data: Array<string> = []
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) id = line.slice(4)
            else if (line.startsWith("data: ")) data.push(line.slice(6))
          }
          if (data.length === 0) continue // a comment or a retry line alone
          seen.push(data.join("\n").slice(0, 200))
          frames.push({ id, data: JSON.parse(data.join("\n")) })
          notify()
        }
      }
    } catch {
      // aborted, or the connection dropped
    } finally {
      done = true
      notify()
    }
  })()
  const next = (timeoutMs = 10_000): Promise<Frame> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        wake = undefined
        reject(new Error(`no SSE frame within ${timeoutMs} ms; received:\n${seen.join("\n")}`))
      }, timeoutMs)
      const check = () => {
        const frame = frames.shift()
        if (frame !== undefined) {
          clearTimeout(timer)
          resolve(frame)
        } else if (done) {
          clearTimeout(timer)
          reject(new Error(`the feed ended; received:\n${seen.join("\n")}`))
        } else {
          wake = check
        }
      }
      check()
    })
  const until = async (test: (frame: Frame) => boolean, timeoutMs = 10_000) => {
    const out: Array<Frame> = []
    const deadline = Date.now() + timeoutMs
    while (true) {
      const frame = await next(Math.max(1, deadline - Date.now()))
      out.push(frame)
      if (test(frame)) return out
    }
  }
  return {
    status: response.status,
    headers: response.headers,
    next,
    until,
    ended,
    close: () => controller.abort()
  }
}
