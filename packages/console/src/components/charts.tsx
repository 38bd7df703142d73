import {
  BarElement,
  CategoryScale,
  Chart as ChartJS,
  Filler,
  Legend,
  LinearScale,
  LineElement,
  PointElement,
  Tooltip,
  type ChartOptions,
} from 'chart.js'
import { Bar, Line } from 'react-chartjs-2'

// Chart.js with only the parts these charts use (it tree-shakes what is not registered). Charts size to their
// box (.chart, a fixed height) so they read the same on a phone and a laptop.

ChartJS.register(BarElement, CategoryScale, Filler, Legend, LinearScale, LineElement, PointElement, Tooltip)

/** Distinct on white and for common colour blindness (Okabe–Ito). */
export const chartPalette = [
  '#2f6fed',
  '#e69f00',
  '#009e73',
  '#cc79a7',
  '#56b4e9',
  '#d55e00',
  '#8a63d2',
  '#999999',
]

export type ChartSeries = {
  readonly label: string
  readonly values: readonly (number | null)[]
}

function baseOptions(yTitle: string | undefined, stacked: boolean, showLegend: boolean, yMax?: number) {
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: 'index', intersect: false },
    plugins: {
      legend: { display: showLegend, position: 'bottom', labels: { boxWidth: 12, boxHeight: 12 } },
      tooltip: { enabled: true },
    },
    scales: {
      x: { stacked, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 8 } },
      y: {
        stacked,
        beginAtZero: true,
        title: { display: yTitle !== undefined, text: yTitle ?? '' },
        ticks: { precision: 0 },
        ...(yMax === undefined ? {} : { max: yMax }),
      },
    },
  } as const
}

export function BarChart({
  labels,
  series,
  yTitle,
  stacked = false,
  height = 240,
  horizontal = false,
  label,
  yMax,
}: {
  labels: readonly string[]
  series: readonly ChartSeries[]
  yTitle?: string
  stacked?: boolean
  height?: number
  horizontal?: boolean
  /** What the chart shows, for screen readers. */
  label: string
  yMax?: number
}) {
  const base = baseOptions(yTitle, stacked, series.length > 1, yMax)
  const options: ChartOptions<'bar'> = horizontal
    ? {
        ...base,
        indexAxis: 'y',
        scales: {
          x: { ...base.scales.y, grid: { display: true } },
          y: { ...base.scales.x, title: { display: false } },
        },
      }
    : base
  return (
    <div className="chart" style={{ height }} role="img" aria-label={label}>
      <Bar
        options={options}
        data={{
          labels: [...labels],
          datasets: series.map((one, index) => ({
            label: one.label,
            data: [...one.values],
            backgroundColor: chartPalette[index % chartPalette.length],
            borderRadius: 3,
            maxBarThickness: 36,
          })),
        }}
      />
    </div>
  )
}

export function LineChart({
  labels,
  series,
  yTitle,
  height = 240,
  label,
  fill = false,
  yMax,
}: {
  labels: readonly string[]
  series: readonly ChartSeries[]
  yTitle?: string
  height?: number
  label: string
  fill?: boolean
  yMax?: number
}) {
  const base = baseOptions(yTitle, false, series.length > 1)
  const options: ChartOptions<'line'> = {
    ...base,
    scales: {
      x: base.scales.x,
      y: { ...base.scales.y, ticks: {}, ...(yMax === undefined ? {} : { max: yMax }) },
    },
    spanGaps: true,
  }
  return (
    <div className="chart" style={{ height }} role="img" aria-label={label}>
      <Line
        options={options}
        data={{
          labels: [...labels],
          datasets: series.map((one, index) => {
            const colour = chartPalette[index % chartPalette.length] ?? '#2f6fed'
            return {
              label: one.label,
              data: [...one.values],
              borderColor: colour,
              backgroundColor: `${colour}33`,
              // Only the first series is shaded: overlapping fills turn muddy.
              fill: fill && index === 0,
              tension: 0.25,
              pointRadius: labels.length > 40 ? 0 : 2,
              borderWidth: 2,
            }
          }),
        }}
      />
    </div>
  )
}
