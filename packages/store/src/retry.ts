// Whole-transaction retries for the errors a concurrent transaction can cause.

/** Runs `work` again, whole, while it fails with an error `retryable` accepts, at most `maxAttempts` times. */
export async function retryWhen<T>(
  work: () => Promise<T>,
  retryable: (error: unknown) => boolean,
  maxAttempts: number,
): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work()
    } catch (error) {
      if (!retryable(error) || attempt >= maxAttempts) throw error
    }
  }
}
