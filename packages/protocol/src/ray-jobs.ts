import Type, { type Static } from 'typebox'
import { maxJobEntrypointLength, maxWorkingDirBytes } from './job-limits.ts'

// Ray's job submission API (what `ray job submit` and `ray.job_submission.JobSubmissionClient` of Ray 2.58
// speak), served by the coordinator under /v1/clusters/:id/ray. Field names are Ray's own, snake_case,
// so the released clients work unchanged; the shapes follow ray/dashboard/modules/job/common.py and
// pydantic_models.py. Everything a renter sends is checked here, at the edge: a runtime_env key gpumesh does
// not carry out is refused by name rather than silently dropped.

/** The Ray version the managed environment pins (the worker's self-test checks the same one). */
export const rayJobApiRayVersion = '2.58.0'
/** Ray's own job API version string (ray/dashboard/modules/version.py CURRENT_VERSION). */
export const rayJobApiVersion = '2'

/** One uploaded package: what Ray's client makes of a working_dir or py_modules entry (a zip). */
export const maxRayPackageBytes = maxWorkingDirBytes
/** Every package of one job together travels in one worker frame. */
export const maxRayJobPackagesBytes = maxWorkingDirBytes
export const maxRayEnvVars = 128
export const maxRayEnvVarValueLength = 32 * 1024
export const maxRayPipRequirements = 200
export const maxRayPipRequirementLength = 512
export const maxRayPyModules = 16
export const maxRayMetadataEntries = 64

/** `gcs://_ray_pkg_<hash>.zip`: the URI Ray's client gives an uploaded directory or file. */
export const RayPackageUri = Type.String({
  pattern: '^gcs://_ray_pkg_[0-9a-f]{16,64}\\.zip$',
  maxLength: 100,
})
export const RayPackageName = Type.String({ pattern: '^_ray_pkg_[0-9a-f]{16,64}\\.zip$', maxLength: 93 })

const EnvVarName = Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' })
/** One requirement line: a name with extras and a version spec, or a pip option line Ray passes through. */
const PipRequirement = Type.String({
  minLength: 1,
  maxLength: maxRayPipRequirementLength,
  pattern: '^[^\\n\\r\\0]+$',
})

export const RayPipSpec = Type.Union([
  Type.Array(PipRequirement, { maxItems: maxRayPipRequirements }),
  Type.Object(
    {
      packages: Type.Array(PipRequirement, { maxItems: maxRayPipRequirements }),
      pip_check: Type.Optional(Type.Boolean()),
      pip_version: Type.Optional(Type.String({ maxLength: 64, pattern: '^[=<>~!0-9.,a-z ]*$' })),
      pip_install_options: Type.Optional(
        Type.Array(Type.String({ maxLength: 256, pattern: '^[^\\n\\r\\0]*$' }), { maxItems: 16 }),
      ),
    },
    { additionalProperties: false },
  ),
])

/**
 * The runtime_env keys gpumesh carries out. Ray's client adds `_ray_commit` itself; `config` holds Ray's
 * own setup timeout and eager-install switches.
 */
export const RayRuntimeEnv = Type.Object(
  {
    working_dir: Type.Optional(RayPackageUri),
    py_modules: Type.Optional(Type.Array(RayPackageUri, { maxItems: maxRayPyModules })),
    env_vars: Type.Optional(
      Type.Record(EnvVarName, Type.String({ maxLength: maxRayEnvVarValueLength }), {
        maxProperties: maxRayEnvVars,
        additionalProperties: false,
      }),
    ),
    pip: Type.Optional(RayPipSpec),
    config: Type.Optional(
      Type.Object(
        {
          setup_timeout_seconds: Type.Optional(Type.Integer({ minimum: -1, maximum: 3600 })),
          eager_install: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    _ray_commit: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
)
export type RayRuntimeEnv = Static<typeof RayRuntimeEnv>

const Resources = Type.Record(
  Type.String({ pattern: '^[A-Za-z0-9_.:/-]{1,64}$' }),
  Type.Number({ minimum: 0 }),
  {
    maxProperties: 32,
    additionalProperties: false,
  },
)

/** JobSubmitRequest (ray/dashboard/modules/job/common.py); the client strips fields that are None. */
export const RayJobSubmitRequest = Type.Object(
  {
    entrypoint: Type.String({ minLength: 1, maxLength: maxJobEntrypointLength }),
    /** Ray lets a client name the job; gpumesh names every job itself (ids are global): the route refuses it. */
    submission_id: Type.Optional(Type.String({ maxLength: 128 })),
    job_id: Type.Optional(Type.String({ maxLength: 128 })),
    runtime_env: Type.Optional(RayRuntimeEnv),
    metadata: Type.Optional(
      Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }), {
        maxProperties: maxRayMetadataEntries,
      }),
    ),
    entrypoint_num_cpus: Type.Optional(Type.Number({ minimum: 0, maximum: 1024 })),
    entrypoint_num_gpus: Type.Optional(Type.Number({ minimum: 0, maximum: 64 })),
    entrypoint_memory: Type.Optional(Type.Integer({ minimum: 0 })),
    entrypoint_resources: Type.Optional(Resources),
  },
  { additionalProperties: false },
)
export type RayJobSubmitRequest = Static<typeof RayJobSubmitRequest>

/** What the head passes to Ray's JobManager besides the entrypoint. */
export const RayEntrypointResources = Type.Object(
  {
    numCpus: Type.Optional(Type.Number({ minimum: 0, maximum: 1024 })),
    numGpus: Type.Optional(Type.Number({ minimum: 0, maximum: 64 })),
    memory: Type.Optional(Type.Integer({ minimum: 0 })),
    resources: Type.Optional(Resources),
  },
  { additionalProperties: false },
)
export type RayEntrypointResources = Static<typeof RayEntrypointResources>

export const RayJobSubmitResponse = Type.Object({ job_id: Type.String(), submission_id: Type.String() })
export const RayJobStopResponse = Type.Object({ stopped: Type.Boolean() })
export const RayJobDeleteResponse = Type.Object({ deleted: Type.Boolean() })
export const RayJobLogsResponse = Type.Object({ logs: Type.String() })
export const RayVersionResponse = Type.Object({
  version: Type.String(),
  ray_version: Type.String(),
  ray_commit: Type.String(),
})

export const RayJobStatusName = Type.Union([
  Type.Literal('PENDING'),
  Type.Literal('RUNNING'),
  Type.Literal('STOPPED'),
  Type.Literal('SUCCEEDED'),
  Type.Literal('FAILED'),
])

/** JobDetails (ray/dashboard/modules/job/pydantic_models.py), times in Unix milliseconds. */
export const RayJobDetails = Type.Object({
  type: Type.Literal('SUBMISSION'),
  job_id: Type.Union([Type.String(), Type.Null()]),
  submission_id: Type.String(),
  driver_info: Type.Null(),
  status: RayJobStatusName,
  entrypoint: Type.String(),
  message: Type.String(),
  error_type: Type.Union([Type.String(), Type.Null()]),
  start_time: Type.Integer(),
  end_time: Type.Union([Type.Integer(), Type.Null()]),
  metadata: Type.Record(Type.String(), Type.String()),
  runtime_env: Type.Record(Type.String(), Type.Unknown()),
  driver_exit_code: Type.Union([Type.Integer(), Type.Null()]),
})
export type RayJobDetails = Static<typeof RayJobDetails>
