import { Column, Entity, PrimaryColumn } from 'typeorm';

/** One persisted key. `version` only ever grows (guarded upserts), so the table never goes backwards. */
@Entity({ name: 'write_back_entries', synchronize: false })
export class WriteBackEntryEntity {
  @PrimaryColumn({ type: 'text' })
  key!: string;

  @Column({ type: 'jsonb' })
  value!: unknown;

  /** Microseconds since the epoch when the write was accepted (bigint comes back from `pg` as a string). */
  @Column({ type: 'bigint' })
  version!: string;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
