import type { ClusterEventView, ClusterNodeView, ClusterView, JobView } from '@gpumesh/protocol'
import { useCallback, useEffect, useRef, useState, type FormEvent } from 'react'
import {
  Badge,
  Breadcrumb,
  ConfirmAction,
  DataTable,
  ErrorBanner,
  Field,
  Loading,
  Notice,
  numeric,
  PageHeader,
  Section,
  Stat,
  SubmitButton,
  TextField,
  toneOf,
} from '../components/ui.tsx'
import { describeError, isNotFound } from '../errors.ts'
import { useFormSubmission } from '../form.ts'
import { formatDuration, formatTime } from '../format.ts'
import { pause, useInterval, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, maxClusterDurationHours, maxJobEntrypointLength, validateForm } from '../validation.ts'

// One cluster, live: the page long-polls the cluster's events and re-reads the cluster after each answer, so
// node progress, billing and state follow within a moment of changing. Jobs run through Ray on the head node;
// the selected job's output streams in by long polling too.

/** How long the coordinator may hold each long poll open (it answers at once when something happens). */
const longPollWaitMs = 20_000
const eventPageLimit = 500
const maxRetryDelayMs = 30_000
const activeJobsRefreshMs = 3_000
const defaultEntrypoint = 'python -c "import ray; ray.init(); print(ray.cluster_resources())"'

/** A node's way into the cluster, in order; `lost` and `released` are how it left. */
const nodePhases = ['reserved', 'keyed', 'mesh_up', 'ray_joined'] as const
const phaseLabels: Readonly<Record<string, string>> = {
  reserved: 'reserved',
  keyed: 'WireGuard key',
  mesh_up: 'mesh up',
  ray_joined: 'in Ray',
}

const isEnded = (cluster: ClusterView) => cluster.state === 'terminated' || cluster.state === 'failed'
const isTerminalJob = (job: JobView) =>
  job.status === 'succeeded' || job.status === 'failed' || job.status === 'stopped'

function NodeProgress({ node }: { node: ClusterNodeView }) {
  const reached = nodePhases.indexOf(node.phase as (typeof nodePhases)[number])
  if (reached < 0) return <Badge>{node.phase}</Badge>
  return (
    <div className="progress" aria-label={`phase ${node.phase}`}>
      {nodePhases.map((phase, index) => (
        <span
          key={phase}
          className={`progress-step ${index <= reached ? 'progress-step-done' : ''}`}
          title={phaseLabels[phase]}
        >
          {phaseLabels[phase]}
        </span>
      ))}
    </div>
  )
}

function Nodes({ cluster }: { cluster: ClusterView }) {
  return (
    <DataTable
      columns={[
        'Node',
        'Role',
        'Progress',
        'Phase and reason',
        'Overlay address',
        numeric('$ / h'),
        numeric('Served'),
      ]}
      rows={cluster.nodes}
      empty="No node reserved yet."
    >
      {(node) => (
        <tr
          key={`${node.deviceId}:${node.joinedAtMs}`}
          data-testid="cluster-node"
          data-phase={node.phase}
          data-device-id={node.deviceId}
        >
          <td className="code">{node.deviceId}</td>
          <td>{node.role}</td>
          <td>
            <NodeProgress node={node} />
          </td>
          <td>
            <Badge>{node.phase}</Badge>
            {node.phaseReason ? <div className="reason">{node.phaseReason}</div> : null}
          </td>
          <td className="code">{node.overlayAddress ?? '—'}</td>
          <td className="numeric">{node.pricePerHourUsd}</td>
          <td className="numeric nowrap">{formatDuration(node.servedMs)}</td>
        </tr>
      )}
    </DataTable>
  )
}

function Billing({ cluster }: { cluster: ClusterView }) {
  if (!cluster.billing) return <p className="muted">This network does not bill clusters.</p>
  return (
    <div className="stat-row stat-row-wrap">
      <Stat
        label="Charged (GMT)"
        value={cluster.billing.chargedGmt}
        testId="cluster-charged"
        sub={`${cluster.billing.intervalsCharged} interval(s)`}
      />
      <Stat
        label="Held (GMT)"
        value={cluster.billing.heldGmt}
        testId="cluster-held"
        sub="for the rest of the rental"
      />
      <Stat label="Billed until" value={formatTime(cluster.billing.billedUntilMs)} />
      <Stat label="Price" value={`$${cluster.pricePerHourUsd}/h`} />
    </div>
  )
}

function Events({ events }: { events: readonly ClusterEventView[] }) {
  const newestFirst = [...events].reverse()
  return (
    <div className="event-list">
      {newestFirst.length === 0 ? <p className="muted">No events yet.</p> : null}
      <ol>
        {newestFirst.map((event) => (
          <li key={event.seq} data-testid="cluster-event" data-kind={event.kind}>
            <span className="event-time nowrap">{formatTime(event.atMs)}</span>
            <span className="event-kind code">{event.kind}</span>
            <span className="event-message">
              {event.message}
              {event.deviceId ? <span className="muted code"> {event.deviceId}</span> : null}
            </span>
          </li>
        ))}
      </ol>
    </div>
  )
}

function Manage({ cluster, onChange }: { cluster: ClusterView; onChange(cluster: ClusterView): void }) {
  const { client } = useSession()
  const [hours, setHours] = useState('1')
  const form = useFormSubmission()
  const ended = isEnded(cluster) || cluster.state === 'terminating' || cluster.desired === 'terminated'

  const extend = async (event: FormEvent) => {
    event.preventDefault()
    const errors = validateForm(
      { hours },
      { hours: { required: true, checks: [checks.number({ above: 0, maximum: maxClusterDurationHours })] } },
    )
    await form.submit(errors, ['hours'], async () =>
      onChange(await client.extendCluster(cluster.id, Number(hours))),
    )
  }

  return (
    <div className="manage">
      <form className="inline-form" onSubmit={(event) => void extend(event)} noValidate>
        <TextField
          label="Extend by (hours)"
          field="hours"
          error={form.fieldErrors['hours']}
          inputMode="decimal"
          value={hours}
          testId="cluster-extend-hours"
          disabled={ended}
          onChange={(value) => {
            setHours(value)
            form.clear(['hours'])
          }}
        />
        <SubmitButton
          label="Extend"
          busyLabel="Extending…"
          busy={form.busy}
          testId="cluster-extend"
          disabled={ended}
          className="button"
        />
      </form>
      <ErrorBanner message={form.banner ?? undefined} />
      <ConfirmAction
        label="Terminate"
        question="Terminate this cluster? Its jobs stop and its machines are released; unused funds return to your wallet."
        confirmLabel="Yes, terminate"
        testId="cluster-terminate"
        confirmTestId="cluster-terminate-confirm"
        disabled={ended}
        onConfirm={async () => onChange(await client.terminateCluster(cluster.id))}
      />
    </div>
  )
}

/** Streams one job's output: long polls after the last chunk until the job is over. */
function JobLogs({ clusterId, job, onJob }: { clusterId: string; job: JobView; onJob(job: JobView): void }) {
  const { client } = useSession()
  const [text, setText] = useState('')
  const [complete, setComplete] = useState(false)
  const [liveError, setLiveError] = useState<string | null>(null)
  const onJobRef = useRef(onJob)
  useEffect(() => {
    onJobRef.current = onJob
  })

  useEffect(() => {
    let cancelled = false
    const follow = async () => {
      let after = 0
      let failures = 0
      while (!cancelled) {
        try {
          const reply = await client.jobLogs(clusterId, job.id, { after, waitMs: longPollWaitMs })
          if (cancelled) return
          failures = 0
          setLiveError(null)
          if (reply.chunks.length > 0) {
            after = reply.chunks.at(-1)?.seq ?? after
            const added = reply.chunks.map((chunk) => chunk.text).join('')
            setText((current) => current + added)
          }
          onJobRef.current(reply.job)
          if (reply.complete) {
            setComplete(true)
            return
          }
        } catch (error) {
          if (cancelled) return
          failures += 1
          setLiveError(describeError(error))
          await pause(Math.min(maxRetryDelayMs, 1000 * 2 ** failures))
        }
      }
    }
    void follow()
    return () => {
      cancelled = true
    }
  }, [client, clusterId, job.id])

  return (
    <div className="job-logs">
      <div className="job-logs-header">
        <span>
          Output of <span className="code">{job.id}</span> <Badge>{job.status}</Badge>
        </span>
        <span className="muted">{complete ? 'complete' : 'following…'}</span>
      </div>
      {liveError ? <Notice tone="warning">Live output paused, retrying: {liveError}</Notice> : null}
      <pre data-testid="job-logs" className="log">
        {text}
      </pre>
    </div>
  )
}

function Jobs({ cluster }: { cluster: ClusterView }) {
  const { client } = useSession()
  const [jobs, setJobs] = useState<JobView[] | null>(null)
  const [jobsError, setJobsError] = useState<unknown>(undefined)
  const [selectedJobId, setSelectedJobId] = useState<string | null>(null)
  const [entrypoint, setEntrypoint] = useState(defaultEntrypoint)
  const form = useFormSubmission()

  const refresh = useCallback(async () => {
    try {
      const reply = await client.listJobs(cluster.id)
      setJobs(reply.jobs)
      setJobsError(undefined)
    } catch (error) {
      setJobsError(error)
    }
  }, [client, cluster.id])

  useEffect(() => {
    void refresh()
  }, [refresh])
  const anyActive = jobs?.some((job) => !isTerminalJob(job)) ?? false
  useInterval(() => void refresh(), anyActive ? activeJobsRefreshMs : null)

  const updateJob = useCallback((updated: JobView) => {
    setJobs((current) => current?.map((job) => (job.id === updated.id ? updated : job)) ?? current)
  }, [])

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const errors = validateForm(
      { entrypoint },
      { entrypoint: { required: true, checks: [checks.maxLength(maxJobEntrypointLength)] } },
    )
    await form.submit(errors, ['entrypoint'], async () => {
      const job = await client.submitJob(cluster.id, { entrypoint: entrypoint.trim() })
      setJobs((current) => [job, ...(current ?? []).filter((one) => one.id !== job.id)])
      setSelectedJobId(job.id)
    })
  }

  const selected = jobs?.find((job) => job.id === selectedJobId) ?? jobs?.[0] ?? null
  const ended = isEnded(cluster)

  return (
    <>
      <form onSubmit={(event) => void submit(event)} noValidate>
        <Field
          label="Entrypoint"
          field="entrypoint"
          error={form.fieldErrors['entrypoint']}
          hint={
            cluster.state === 'ready'
              ? 'Runs on the head node through Ray job submission.'
              : 'Jobs run once the cluster is ready.'
          }
        >
          <textarea
            rows={3}
            spellCheck={false}
            value={entrypoint}
            data-testid="job-entrypoint"
            className="code"
            onChange={(event) => {
              setEntrypoint(event.target.value)
              form.clear(['entrypoint'])
            }}
          />
        </Field>
        <ErrorBanner message={form.banner ?? undefined} />
        <SubmitButton
          label="Submit job"
          busyLabel="Submitting…"
          busy={form.busy}
          testId="job-submit"
          disabled={ended}
        />
      </form>
      {jobsError !== undefined ? <ErrorBanner error={jobsError} /> : null}
      {jobs === null ? (
        <Loading what="Loading jobs" />
      ) : (
        <DataTable
          className="clickable-rows"
          columns={['Job', 'Status', 'Entrypoint', 'Started', 'Finished', '']}
          rows={jobs}
          empty="No jobs yet."
        >
          {(job) => (
            <tr
              key={job.id}
              data-testid="job-row"
              data-job-id={job.id}
              data-status={job.status}
              className={job.id === selected?.id ? 'row-selected' : ''}
              onClick={() => setSelectedJobId(job.id)}
            >
              <td className="code">{job.id}</td>
              <td>
                <Badge>{job.status}</Badge>
                {job.exitCode !== null ? <span className="muted"> exit {job.exitCode}</span> : null}
                {job.message ? <div className="reason">{job.message}</div> : null}
              </td>
              <td className="code truncate" title={job.entrypoint}>
                {job.entrypoint}
              </td>
              <td className="nowrap">{formatTime(job.createdAtMs)}</td>
              <td className="nowrap">{formatTime(job.finishedAtMs)}</td>
              <td>
                {!isTerminalJob(job) ? (
                  <button
                    type="button"
                    className="button button-small"
                    data-testid="job-stop"
                    onClick={(event) => {
                      event.stopPropagation()
                      client
                        .stopJob(cluster.id, job.id)
                        .then(updateJob, (error: unknown) => setJobsError(error))
                    }}
                  >
                    Stop
                  </button>
                ) : null}
              </td>
            </tr>
          )}
        </DataTable>
      )}
      {selected ? (
        <JobLogs key={selected.id} clusterId={cluster.id} job={selected} onJob={updateJob} />
      ) : null}
    </>
  )
}

export function ClusterPage({ clusterId }: { clusterId: string }) {
  const { client } = useSession()
  const [cluster, setCluster] = useState<ClusterView | null>(null)
  const [loadError, setLoadError] = useState<unknown>(undefined)
  const [events, setEvents] = useState<ClusterEventView[]>([])
  const [liveError, setLiveError] = useState<string | null>(null)
  useTitle(cluster ? `Cluster ${cluster.name}` : 'Cluster')

  useEffect(() => {
    let cancelled = false
    const follow = async () => {
      /** The last event seen; undefined until the backlog has been read. */
      let after: string | undefined
      let failures = 0
      while (!cancelled) {
        try {
          const current = await client.getCluster(clusterId)
          if (cancelled) return
          setCluster(current)
          setLoadError(undefined)
          setLiveError(null)
          const ended = isEnded(current)
          const reply = await client.clusterEvents(clusterId, {
            after: after ?? '0',
            limit: eventPageLimit,
            // The backlog is read at once; after that the coordinator holds the request until something happens.
            waitMs: after === undefined || ended ? 0 : longPollWaitMs,
          })
          if (cancelled) return
          failures = 0
          const last = reply.events.at(-1)
          if (last) {
            const seen = after
            after = last.seq
            setEvents((previous) => (seen === undefined ? reply.events : [...previous, ...reply.events]))
          } else {
            after ??= '0'
          }
          // An ended cluster changes no more: one last read of its events, then the page stops polling.
          if (ended && reply.events.length < eventPageLimit) return
        } catch (error) {
          if (cancelled) return
          if (isNotFound(error)) {
            setLoadError(error)
            return
          }
          failures += 1
          setLiveError(describeError(error))
          await pause(Math.min(maxRetryDelayMs, 1000 * 2 ** failures))
        }
      }
    }
    void follow()
    return () => {
      cancelled = true
    }
  }, [client, clusterId])

  const breadcrumb = <Breadcrumb href="/clusters">← My clusters</Breadcrumb>
  if (!cluster) {
    return (
      <>
        {breadcrumb}
        {loadError !== undefined ? (
          <ErrorBanner error={loadError} />
        ) : liveError ? (
          <ErrorBanner message={`Could not load the cluster, retrying: ${liveError}`} />
        ) : (
          <Loading what="Loading the cluster" />
        )}
      </>
    )
  }

  const joined = cluster.nodes.filter((node) => node.phase === 'ray_joined').length
  const active = cluster.nodes.filter((node) => node.leftAtMs === null).length
  return (
    <>
      {breadcrumb}
      <PageHeader
        title={cluster.name}
        subtitle={
          <>
            <span className="code">{cluster.id}</span> · {cluster.nodeCount} node(s) × {cluster.gpusPerNode}{' '}
            GPU(s) · {cluster.durationHours} h
          </>
        }
        actions={
          <span className={`badge badge-large badge-${toneOf(cluster.state)}`} data-testid="cluster-phase">
            {cluster.state}
          </span>
        }
      />
      {cluster.stateReason ? <p className="muted state-reason">{cluster.stateReason}</p> : null}
      {liveError ? <Notice tone="warning">Live updates paused, retrying: {liveError}</Notice> : null}
      <Section>
        <div className="stat-row stat-row-wrap">
          <Stat label="Nodes in Ray" value={`${joined} / ${active}`} sub={`${cluster.nodeCount} requested`} />
          <Stat label="Created" value={formatTime(cluster.createdAtMs)} />
          <Stat label="Ready" value={formatTime(cluster.readyAtMs)} />
          <Stat
            label={cluster.endedAtMs ? 'Ended' : 'Expires'}
            value={formatTime(cluster.endedAtMs ?? cluster.expiresAtMs)}
          />
        </div>
        {cluster.rayAddress || cluster.subnet ? (
          <dl className="facts">
            {cluster.subnet ? (
              <>
                <dt>Overlay subnet</dt>
                <dd className="code">{cluster.subnet}</dd>
              </>
            ) : null}
            {cluster.rayAddress ? (
              <>
                <dt>Ray head (GCS)</dt>
                <dd className="code">{cluster.rayAddress}</dd>
              </>
            ) : null}
            <dt>From your machine</dt>
            <dd className="code">gpumesh cluster connect {cluster.id}</dd>
          </dl>
        ) : null}
      </Section>
      <Section title="Nodes">
        <Nodes cluster={cluster} />
      </Section>
      <div className="grid-2">
        <Section title="Billing">
          <Billing cluster={cluster} />
        </Section>
        <Section title="Manage">
          <Manage cluster={cluster} onChange={setCluster} />
        </Section>
      </div>
      <Section title="Jobs">
        <Jobs cluster={cluster} />
      </Section>
      <Section title="Events">
        <Events events={events} />
      </Section>
    </>
  )
}
