import { findGpuModel, gpuModelKey } from '@gpumesh/core'
import { maxGpusPerDevice, type GpuInfo, type MigInstance } from '@gpumesh/protocol'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { errorMessage, pushWarning, quoteValue } from './warnings.ts'

// Reads `nvidia-smi -q -x` output. The format drifts between driver releases (power_readings became
// gpu_power_readings, new fields appear, old ones read N/A), and real output can be cut short, so the parser
// never throws: whatever it cannot read becomes a warning and the GPUs it can read are still reported.

export type NvidiaSmiReading = {
  gpus: GpuInfo[]
  driverVersion?: string
  cudaVersion?: string
  warnings: string[]
}

/** Longest nvidia-smi output we read; a 64-GPU machine writes a few MiB at most. */
export const maxNvidiaSmiOutputBytes = 16 * 1024 * 1024

const maxMigInstancesPerGpu = 64
const maxGpuIndex = 1024
const maxIdentifierLength = 128
const maxShortTextLength = 64

type XmlElement = { readonly [name: string]: unknown }

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Values stay strings: "0000000000000" is a serial, not the number 0, and units need their text.
  parseTagValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // Repeated elements we iterate over are always arrays, even when a machine has just one of them.
  isArray: (tagName) => tagName === 'gpu' || tagName === 'mig_device',
})

export function parseNvidiaSmiXml(xml: string): NvidiaSmiReading {
  const warnings: string[] = []
  if (xml.trim() === '') {
    pushWarning(warnings, 'nvidia-smi output is empty')
    return { gpus: [], warnings }
  }
  if (!/<nvidia_smi_log[\s>/]|<gpu[\s>]/.test(xml)) {
    pushWarning(warnings, `output is not nvidia-smi XML; it starts ${quoteValue(xml.trim())}`)
    return { gpus: [], warnings }
  }
  const document = parseWholeDocument(xml, warnings)
  if (document) return readDocument(document, warnings)
  return salvageGpuBlocks(xml, warnings)
}

function parseWholeDocument(xml: string, warnings: string[]): XmlElement | undefined {
  const validation = XMLValidator.validate(xml)
  if (validation !== true) {
    const { msg, line } = validation.err
    const reason = `${msg.replace(/\s+/g, ' ')} (line ${line})`
    pushWarning(warnings, `nvidia-smi XML is not well-formed: ${reason}; reading complete GPUs only`)
    return undefined
  }
  try {
    const parsed: unknown = parser.parse(xml)
    return isXmlElement(parsed) ? parsed : undefined
  } catch (error) {
    pushWarning(
      warnings,
      `nvidia-smi XML could not be parsed (${errorMessage(error)}); reading complete GPUs only`,
    )
    return undefined
  }
}

function readDocument(document: XmlElement, warnings: string[]): NvidiaSmiReading {
  const log = elementAt(document, 'nvidia_smi_log')
  if (!log) {
    if (!Object.hasOwn(document, 'nvidia_smi_log')) {
      pushWarning(warnings, 'output has no <nvidia_smi_log> element')
    }
    return { gpus: [], warnings }
  }
  const gpuElements = childElements(log, 'gpu')
  warnAboutGpuCount(textAt(log, 'attached_gpus'), gpuElements.length, warnings)
  return {
    gpus: readGpus(gpuElements, warnings),
    ...readVersions(textAt(log, 'driver_version'), textAt(log, 'cuda_version'), warnings),
    warnings,
  }
}

// For output that is not well-formed (a truncated capture, a crash mid-write) each complete
// <gpu>…</gpu> block is still a document of its own, and a GPU cut short is skipped rather than guessed at.
function salvageGpuBlocks(xml: string, warnings: string[]): NvidiaSmiReading {
  const gpuStartTag = /<gpu(?:\s[^>]*)?>/g
  const starts = [...xml.matchAll(gpuStartTag)].map((match) => match.index)
  const headerText = xml.slice(0, starts[0] ?? xml.length)
  warnAboutGpuCount(headerValue(headerText, 'attached_gpus'), starts.length, warnings)

  const gpuElements: (XmlElement | undefined)[] = starts.map((start, position) => {
    const nextStart = starts[position + 1] ?? xml.length
    const endTagIndex = xml.indexOf('</gpu>', start)
    if (endTagIndex === -1 || endTagIndex > nextStart) {
      pushWarning(warnings, `skipped GPU at position ${position}: its <gpu> element is incomplete`)
      return undefined
    }
    const block = xml.slice(start, endTagIndex + '</gpu>'.length)
    const element = parseGpuBlock(block)
    if (!element) {
      pushWarning(warnings, `skipped GPU at position ${position}: its <gpu> element is not well-formed`)
    }
    return element
  })
  return {
    gpus: readGpus(gpuElements, warnings),
    ...readVersions(
      headerValue(headerText, 'driver_version'),
      headerValue(headerText, 'cuda_version'),
      warnings,
    ),
    warnings,
  }
}

function parseGpuBlock(block: string): XmlElement | undefined {
  if (XMLValidator.validate(block) !== true) return undefined
  try {
    const parsed: unknown = parser.parse(block)
    return isXmlElement(parsed) ? childElements(parsed, 'gpu')[0] : undefined
  } catch {
    return undefined
  }
}

function headerValue(headerText: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(headerText)
  return match?.[1] === undefined ? undefined : presentText(match[1])
}

function readVersions(
  driverVersion: string | undefined,
  cudaVersion: string | undefined,
  warnings: string[],
): { driverVersion?: string; cudaVersion?: string } {
  const versions: { driverVersion?: string; cudaVersion?: string } = {}
  const driver = boundedText(driverVersion, maxShortTextLength, 'driver_version', warnings)
  const cuda = boundedText(cudaVersion, maxShortTextLength, 'cuda_version', warnings)
  if (driver !== undefined) versions.driverVersion = driver
  if (cuda !== undefined) versions.cudaVersion = cuda
  return versions
}

function warnAboutGpuCount(attachedText: string | undefined, listedCount: number, warnings: string[]): void {
  const attachedCount =
    attachedText !== undefined && /^\d+$/.test(attachedText) ? Number(attachedText) : undefined
  if (attachedCount !== undefined && attachedCount !== listedCount) {
    pushWarning(
      warnings,
      `nvidia-smi reports ${attachedCount} attached GPUs but its output lists ${listedCount}`,
    )
  } else if (listedCount === 0) {
    pushWarning(warnings, 'nvidia-smi output lists no GPUs')
  }
}

function readGpus(gpuElements: readonly (XmlElement | undefined)[], warnings: string[]): GpuInfo[] {
  const gpus: GpuInfo[] = []
  const positionByUuid = new Map<string, number>()
  for (const [position, element] of gpuElements.entries()) {
    if (!element) continue
    if (gpus.length === maxGpusPerDevice) {
      pushWarning(warnings, `only the first ${maxGpusPerDevice} GPUs are reported`)
      break
    }
    const gpu = readGpu(element, position, warnings)
    if (!gpu) continue
    const earlierPosition = positionByUuid.get(gpu.uuid)
    if (earlierPosition !== undefined) {
      pushWarning(
        warnings,
        `skipped GPU at position ${position}: uuid ${gpu.uuid} repeats the GPU at position ${earlierPosition}`,
      )
      continue
    }
    positionByUuid.set(gpu.uuid, position)
    gpus.push(gpu)
  }
  return gpus
}

function readGpu(gpu: XmlElement, position: number, warnings: string[]): GpuInfo | undefined {
  const pciBusId = textAt(gpu, 'pci', 'pci_bus_id') ?? textAt(gpu, '@_id')
  const where = `GPU at position ${position}${pciBusId ? ` (PCI ${pciBusId})` : ''}`

  const problems: string[] = []
  const uuid = requiredText(textAt(gpu, 'uuid'), '<uuid>', problems)
  const productName = requiredText(textAt(gpu, 'product_name'), '<product_name>', problems)
  const vramMib = requiredMebibytes(textAt(gpu, 'fb_memory_usage', 'total'), problems)
  if (uuid === undefined || productName === undefined || vramMib === undefined) {
    pushWarning(warnings, `skipped ${where}: ${problems.join(', ')}`)
    return undefined
  }

  const fieldWarning = (message: string) => pushWarning(warnings, `${where}: ${message}`)
  const info: GpuInfo = {
    index: readIndex(textAt(gpu, 'minor_number'), position),
    uuid,
    productName,
    modelKey: gpuModelKey(productName) || 'unknown',
    vramMib,
    migMode: readMigMode(textAt(gpu, 'mig_mode', 'current_mig')),
    migInstances: readMigInstances(gpu, fieldWarning),
  }

  const architecture = textAt(gpu, 'product_architecture') ?? findGpuModel(productName)?.architecture
  if (architecture !== undefined && architecture.length <= maxShortTextLength) {
    info.architecture = architecture
  }

  const serial = textAt(gpu, 'serial')
  // Boards without a programmed serial report zeros; they would all look like the same board.
  if (serial !== undefined && !/^0+$/.test(serial) && serial.length <= maxShortTextLength) {
    info.serial = serial
  }

  if (pciBusId !== undefined && pciBusId.length <= maxShortTextLength) info.pciBusId = pciBusId

  const linkInfo = elementAt(gpu, 'pci', 'pci_gpu_link_info')
  const generationText =
    textAt(linkInfo, 'pcie_gen', 'max_link_gen') ?? textAt(linkInfo, 'pcie_gen', 'current_link_gen')
  const pcieGeneration = readBoundedInteger(generationText, /^(\d+)$/, 1, 16)
  if (pcieGeneration !== undefined) {
    info.pcieGeneration = pcieGeneration
  } else if (generationText !== undefined) {
    fieldWarning(`unreadable PCIe generation ${quoteValue(generationText)}`)
  }

  const widthText =
    textAt(linkInfo, 'link_widths', 'max_link_width') ?? textAt(linkInfo, 'link_widths', 'current_link_width')
  const pcieWidthLanes = readBoundedInteger(widthText, /^(\d+)\s*x$/i, 1, 64)
  if (pcieWidthLanes !== undefined) {
    info.pcieWidthLanes = pcieWidthLanes
  } else if (widthText !== undefined) {
    fieldWarning(`unreadable PCIe link width ${quoteValue(widthText)}`)
  }

  const powerLimitText = readPowerLimitText(gpu)
  const powerLimitWatts = powerLimitText === undefined ? undefined : parseWatts(powerLimitText)
  if (powerLimitWatts !== undefined) {
    info.powerLimitWatts = powerLimitWatts
  } else if (powerLimitText !== undefined) {
    fieldWarning(`unreadable power limit ${quoteValue(powerLimitText)}`)
  }

  return info
}

function requiredText(text: string | undefined, element: string, problems: string[]): string | undefined {
  if (text === undefined) {
    problems.push(`${element} is missing or N/A`)
    return undefined
  }
  if (text.length > maxIdentifierLength) {
    problems.push(`${element} is longer than ${maxIdentifierLength} characters`)
    return undefined
  }
  return text
}

function requiredMebibytes(text: string | undefined, problems: string[]): number | undefined {
  if (text === undefined) {
    problems.push('<fb_memory_usage><total> is missing or N/A')
    return undefined
  }
  const mebibytes = parseMebibytes(text)
  if (mebibytes === undefined) problems.push(`unreadable <fb_memory_usage><total> ${quoteValue(text)}`)
  return mebibytes
}

function readIndex(minorNumberText: string | undefined, position: number): number {
  const minorNumber = readBoundedInteger(minorNumberText, /^(\d+)$/, 0, maxGpuIndex)
  return minorNumber ?? position
}

function readMigMode(currentMigText: string | undefined): GpuInfo['migMode'] {
  const normalized = currentMigText?.toLowerCase()
  if (normalized === 'enabled') return 'enabled'
  if (normalized === 'disabled') return 'disabled'
  return 'unsupported'
}

function readMigInstances(gpu: XmlElement, fieldWarning: (message: string) => void): MigInstance[] {
  // A GPU without MIG devices writes <mig_devices>None</mig_devices>, which is text, not an element.
  const migDevices = childElements(elementAt(gpu, 'mig_devices'), 'mig_device')
  if (migDevices.length > maxMigInstancesPerGpu) {
    fieldWarning(`only the first ${maxMigInstancesPerGpu} of ${migDevices.length} MIG devices are reported`)
  }
  return migDevices.slice(0, maxMigInstancesPerGpu).map((device) => {
    const instance: MigInstance = {}
    const gpuInstanceId = readBoundedInteger(textAt(device, 'gpu_instance_id'), /^(\d+)$/, 0)
    const computeInstanceId = readBoundedInteger(textAt(device, 'compute_instance_id'), /^(\d+)$/, 0)
    const memoryTotalText = textAt(device, 'fb_memory_usage', 'total')
    const vramMib = memoryTotalText === undefined ? undefined : parseMebibytes(memoryTotalText)
    const multiprocessorCount = readBoundedInteger(
      textAt(device, 'device_attributes', 'shared', 'multiprocessor_count'),
      /^(\d+)$/,
      0,
    )
    if (gpuInstanceId !== undefined) instance.gpuInstanceId = gpuInstanceId
    if (computeInstanceId !== undefined) instance.computeInstanceId = computeInstanceId
    if (vramMib !== undefined) instance.vramMib = vramMib
    if (multiprocessorCount !== undefined) instance.multiprocessorCount = multiprocessorCount
    return instance
  })
}

function readPowerLimitText(gpu: XmlElement): string | undefined {
  // Drivers before 530 write <power_readings>; later ones <gpu_power_readings> (and <module_power_readings>,
  // which covers the whole module, not the GPU).
  for (const section of ['gpu_power_readings', 'power_readings']) {
    const readings = elementAt(gpu, section)
    const limit =
      textAt(readings, 'power_limit') ??
      textAt(readings, 'current_power_limit') ??
      textAt(readings, 'enforced_power_limit')
    if (limit !== undefined) return limit
  }
  return undefined
}

const mebibytesPerUnit: Readonly<Record<string, number>> = { kib: 1 / 1024, mib: 1, gib: 1024 }

function parseMebibytes(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([KMG]iB)$/i.exec(text)
  const amount = match?.[1]
  const unit = match?.[2]?.toLowerCase()
  if (amount === undefined || unit === undefined) return undefined
  const mebibytes = Math.floor(Number(amount) * (mebibytesPerUnit[unit] ?? Number.NaN))
  return Number.isSafeInteger(mebibytes) && mebibytes <= 16 * 1024 * 1024 ? mebibytes : undefined
}

function parseWatts(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*W$/.exec(text)
  if (match?.[1] === undefined) return undefined
  const watts = Number(match[1])
  return Number.isFinite(watts) && watts <= 10_000 ? watts : undefined
}

function readBoundedInteger(
  text: string | undefined,
  pattern: RegExp,
  minimum: number,
  maximum = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const digits = text === undefined ? undefined : pattern.exec(text)?.[1]
  if (digits === undefined) return undefined
  const value = Number(digits)
  return Number.isSafeInteger(value) && value >= minimum && value <= maximum ? value : undefined
}

function boundedText(
  value: string | undefined,
  maxLength: number,
  fieldName: string,
  warnings: string[],
): string | undefined {
  if (value === undefined || value.length <= maxLength) return value
  pushWarning(warnings, `ignored <${fieldName}> longer than ${maxLength} characters`)
  return undefined
}

// nvidia-smi fills fields it cannot read with a placeholder; bracketed ones ([N/A], [Not Supported],
// [Unknown Error], [Insufficient Permissions]) come from newer drivers.
const absentValues = new Set(['', 'n/a', 'not found', 'not supported', 'not available', 'unknown error'])

function presentText(raw: string): string | undefined {
  const text = raw.trim()
  if (absentValues.has(text.toLowerCase()) || /^\[.*\]$/.test(text)) return undefined
  return text
}

function isXmlElement(value: unknown): value is XmlElement {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function child(parent: XmlElement | undefined, name: string): unknown {
  if (!parent || !Object.hasOwn(parent, name)) return undefined
  const value = parent[name]
  return Array.isArray(value) ? value[0] : value
}

function childElements(parent: XmlElement | undefined, name: string): XmlElement[] {
  if (!parent || !Object.hasOwn(parent, name)) return []
  const value = parent[name]
  return (Array.isArray(value) ? value : [value]).filter(isXmlElement)
}

function elementAt(parent: XmlElement | undefined, ...path: string[]): XmlElement | undefined {
  let current = parent
  for (const name of path) {
    const next = child(current, name)
    if (!isXmlElement(next)) return undefined
    current = next
  }
  return current
}

function textAt(parent: XmlElement | undefined, ...path: string[]): string | undefined {
  const containerPath = path.slice(0, -1)
  const leafName = path.at(-1)
  if (leafName === undefined) return undefined
  const leaf = child(elementAt(parent, ...containerPath), leafName)
  if (typeof leaf === 'string') return presentText(leaf)
  // An element with attributes keeps its text under '#text'.
  if (isXmlElement(leaf) && typeof leaf['#text'] === 'string') return presentText(leaf['#text'])
  return undefined
}
