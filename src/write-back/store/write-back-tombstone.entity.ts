import { Column, Entity, PrimaryColumn } from 'typeorm';

/** The version of a committed delete: writes of the key at or below it are ignored. */
@Entity({ name: 'write_back_tombstones', synchronize: false })
export class WriteBackTombstoneEntity {
  @PrimaryColumn({ type: 'text' })
  key!: string;

  @Column({ type: 'bigint' })
  version!: string;

  @Column({ name: 'deleted_at', type: 'timestamptz' })
  deletedAt!: Date;
}
