import { Link, useLocation } from 'wouter'
import { Badge, EmptyRow, Loaded, PageHeader, Section, TableScroll } from '../components/ui.tsx'
import { formatTime } from '../format.ts'
import { useInterval, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

// A renter's clusters, newest first.

const refreshMs = 10_000

export function ClustersPage() {
  useTitle('Clusters')
  const { client } = useSession()
  const [, navigate] = useLocation()
  const clusters = useResource(() => client.listClusters({ limit: 100 }), [client])
  useInterval(clusters.reload, refreshMs)
  return (
    <>
      <PageHeader
        title="My clusters"
        actions={
          <Link href="/rent" className="button button-primary" data-testid="clusters-new">
            Rent a cluster
          </Link>
        }
      />
      <Section>
        <Loaded resource={clusters} what="Loading clusters">
          {(reply) => (
            <TableScroll>
              <table className="clickable-rows">
                <thead>
                  <tr>
                    <th>Cluster</th>
                    <th>State</th>
                    <th className="numeric">Nodes</th>
                    <th className="numeric">GPUs / node</th>
                    <th className="numeric">$ / h</th>
                    <th className="numeric">Charged (GMT)</th>
                    <th>Created</th>
                    <th>Expires</th>
                  </tr>
                </thead>
                <tbody>
                  {reply.clusters.length === 0 ? (
                    <EmptyRow columns={8}>
                      No clusters yet. <Link href="/rent">Rent one</Link>.
                    </EmptyRow>
                  ) : null}
                  {reply.clusters.map((cluster) => (
                    <tr
                      key={cluster.id}
                      data-testid="cluster-row"
                      data-cluster-id={cluster.id}
                      data-state={cluster.state}
                      onClick={(event) => {
                        if (!(event.target as HTMLElement).closest('a'))
                          navigate(`/clusters/${encodeURIComponent(cluster.id)}`)
                      }}
                    >
                      <td>
                        <Link href={`/clusters/${encodeURIComponent(cluster.id)}`}>{cluster.name}</Link>
                        <div className="muted code">{cluster.id}</div>
                      </td>
                      <td>
                        <Badge>{cluster.state}</Badge>
                      </td>
                      <td className="numeric">{cluster.nodeCount}</td>
                      <td className="numeric">{cluster.gpusPerNode}</td>
                      <td className="numeric">{cluster.pricePerHourUsd}</td>
                      <td className="numeric">{cluster.billing?.chargedGmt ?? '—'}</td>
                      <td className="nowrap">{formatTime(cluster.createdAtMs)}</td>
                      <td className="nowrap">{formatTime(cluster.expiresAtMs)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          )}
        </Loaded>
      </Section>
    </>
  )
}
