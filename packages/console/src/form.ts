import { useCallback, useState } from 'react'
import { bannerFor, fieldErrorsOf, type FieldErrors } from './errors.ts'
import { hasErrors } from './validation.ts'

// One submit cycle of a form: the client's checks first (nothing is sent while a field is wrong), then the
// request; the coordinator's field errors land beside the same inputs, anything else in one banner.

export type FormSubmission = {
  readonly fieldErrors: FieldErrors
  readonly banner: string | null
  readonly busy: boolean
  /** The last failure itself, for forms that act on its code (e.g. a link to the wallet when funds are short). */
  readonly error: unknown
  /**
   * Runs `action` when `clientErrors` is empty. `fieldsShown` are the API field names this form has inputs
   * for: an error naming another field goes to the banner. Answers whether the action succeeded.
   */
  submit(
    clientErrors: FieldErrors,
    fieldsShown: readonly string[],
    action: () => Promise<void>,
  ): Promise<boolean>
  /** Forgets the errors of fields the user has since changed. */
  clear(fields: readonly string[]): void
  reset(): void
}

export function useFormSubmission(): FormSubmission {
  const [fieldErrors, setFieldErrors] = useState<FieldErrors>({})
  const [banner, setBanner] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<unknown>(undefined)

  const submit = useCallback(
    async (clientErrors: FieldErrors, fieldsShown: readonly string[], action: () => Promise<void>) => {
      setBanner(null)
      setError(undefined)
      setFieldErrors(clientErrors)
      if (hasErrors(clientErrors)) return false
      setBusy(true)
      try {
        await action()
        return true
      } catch (caught) {
        setError(caught)
        const serverErrors = fieldErrorsOf(caught)
        setFieldErrors(
          Object.fromEntries(Object.entries(serverErrors).filter(([field]) => fieldsShown.includes(field))),
        )
        setBanner(bannerFor(caught, serverErrors, fieldsShown))
        return false
      } finally {
        setBusy(false)
      }
    },
    [],
  )
  const clear = useCallback((fields: readonly string[]) => {
    setFieldErrors((current) =>
      fields.some((field) => field in current)
        ? Object.fromEntries(Object.entries(current).filter(([field]) => !fields.includes(field)))
        : current,
    )
  }, [])
  const reset = useCallback(() => {
    setFieldErrors({})
    setBanner(null)
    setError(undefined)
  }, [])
  return { fieldErrors, banner, busy, error, submit, clear, reset }
}

/** What ties an input to one value of a form: its API field name, that field's error, the value and its setter. */
export type FieldBinding<Value> = {
  readonly field: string
  readonly error: string | undefined
  readonly value: Value
  onChange(value: Value): void
}

/**
 * Binds inputs to a form's values: `bind(name)` gives a `TextField` or `SelectField` its value, its error and
 * a setter that goes through `set`. `field` is the API's name for the input where it differs from `name`.
 */
export function bindFields<Values extends object>(
  values: Values,
  set: (change: Partial<Values>) => void,
  fieldErrors: FieldErrors = {},
) {
  return <Name extends keyof Values & string>(
    name: Name,
    field: string = name,
  ): FieldBinding<Values[Name]> => ({
    field,
    error: fieldErrors[field],
    value: values[name],
    onChange: (value) => set({ [name]: value } as unknown as Partial<Values>),
  })
}
